//! The results stream: each mode's `/results/<mode>` folder, as base64 of a tar.gz between
//! marker lines, written by the guest to its second serial port and unpacked on the host.

use std::{collections::BTreeMap, fmt, fs, io, io::Read as _, path::Path};

use base64::Engine as _;

use crate::probe_run::ProbeRun;

/// Line that opens a mode's archive; followed by the mode.
pub const BEGIN_MARKER: &str = "KSPAN-RESULTS-BEGIN";
/// Line that closes a mode's archive; followed by the mode.
pub const END_MARKER: &str = "KSPAN-RESULTS-END";

/// One mode's archive found in the stream.
#[derive(Debug)]
pub struct ModeArchive {
    /// The mode as the guest named it.
    pub mode: String,
    /// The decoded tar.gz, or why it cannot be had.
    pub archive: Result<Vec<u8>, StreamError>,
}

/// Why a mode's archive in the stream is unusable.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The stream ended (or the next archive began) before the END marker.
    Truncated { lines: usize },
    /// The text between the markers is not base64.
    NotBase64(String),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Truncated { lines } => write!(
                f,
                "results stream truncated after {lines} lines: no {END_MARKER} line (did the guest stop early?)"
            ),
            StreamError::NotBase64(reason) => write!(f, "results stream is not valid base64: {reason}"),
        }
    }
}

impl std::error::Error for StreamError {}

/// Every archive in `stream`, in order. Lines outside BEGIN/END pairs are ignored; the serial
/// line's `\r` is dropped.
pub fn parse_stream(stream: &str) -> Vec<ModeArchive> {
    let mut archives = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for line in stream.lines().map(|line| line.trim_end_matches('\r')) {
        if let Some(mode) = marker_arg(line, BEGIN_MARKER) {
            if let Some((mode, _, lines)) = open.take() {
                archives.push(ModeArchive {
                    mode,
                    archive: Err(StreamError::Truncated { lines }),
                });
            }
            open = Some((mode.to_string(), String::new(), 0));
        } else if let Some(mode) = marker_arg(line, END_MARKER) {
            match open.take() {
                Some((open_mode, text, _)) if open_mode == mode => {
                    let archive = base64::engine::general_purpose::STANDARD
                        .decode(text.as_bytes())
                        .map_err(|error| StreamError::NotBase64(error.to_string()));
                    archives.push(ModeArchive {
                        mode: open_mode,
                        archive,
                    });
                }
                Some((open_mode, _, lines)) => {
                    archives.push(ModeArchive {
                        mode: open_mode,
                        archive: Err(StreamError::Truncated { lines }),
                    });
                }
                None => {}
            }
        } else if let Some((_, text, lines)) = open.as_mut() {
            text.push_str(line.trim());
            *lines += 1;
        }
    }
    if let Some((mode, _, lines)) = open {
        archives.push(ModeArchive {
            mode,
            archive: Err(StreamError::Truncated { lines }),
        });
    }
    archives
}

fn marker_arg<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.trim().strip_prefix(marker)?;
    rest.starts_with(' ').then(|| rest.trim())
}

/// Unpacks a mode's tar.gz under `dest` (the archive holds `<mode>/…`).
pub fn unpack(archive: &[u8], dest: &Path) -> io::Result<()> {
    // Decompress fully first: gzip's length and CRC check catch a damaged stream before any
    // file is written.
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(archive).read_to_end(&mut tar_bytes)?;
    let mut tar = tar::Archive::new(&tar_bytes[..]);
    tar.set_preserve_permissions(false);
    tar.unpack(dest)
}

/// Unpacks every mode's archive in the results stream file into `dest/<mode>/`; a mode the
/// stream lacks is absent from the map (a missing file is an empty stream).
pub fn unpack_stream_file(
    stream_path: &Path,
    dest: &Path,
) -> BTreeMap<ProbeRun, Result<(), String>> {
    let mut unpacked = BTreeMap::new();
    let stream = match fs::read(stream_path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => return unpacked,
    };
    for archive in parse_stream(&stream) {
        let Some(mode) = ProbeRun::from_name(&archive.mode) else {
            continue;
        };
        let outcome = archive
            .archive
            .map_err(|error| format!("{error} ({})", stream_path.display()))
            .and_then(|bytes| {
                unpack(&bytes, dest).map_err(|error| {
                    format!(
                        "cannot unpack the results from {}: {error}",
                        stream_path.display()
                    )
                })
            });
        unpacked.insert(mode, outcome);
    }
    unpacked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar.gz holding `kprobe/summary.json`, base64 in 76-column lines as busybox writes it.
    fn encoded_archive() -> String {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let body = br#"{"expected": 3}"#.repeat(20);
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "kprobe/summary.json", &body[..])
            .expect("append");
        let gz = builder.into_inner().expect("tar").finish().expect("gzip");
        let text = base64::engine::general_purpose::STANDARD.encode(gz);
        text.as_bytes()
            .chunks(76)
            .map(|chunk| format!("{}\r\n", String::from_utf8_lossy(chunk)))
            .collect()
    }

    #[test]
    fn unpacks_an_archive_from_the_stream() {
        let stream = format!(
            "noise\r\nKSPAN-RESULTS-BEGIN kprobe\r\n{}KSPAN-RESULTS-END kprobe\r\n",
            encoded_archive()
        );
        let archives = parse_stream(&stream);
        assert_eq!(archives.len(), 1);
        assert_eq!(archives[0].mode, "kprobe");
        let archive = archives[0].archive.as_ref().expect("complete archive");

        let dest = std::env::temp_dir().join(format!("xtask-results-{}", std::process::id()));
        unpack(archive, &dest).expect("unpacks");
        let summary = fs::read_to_string(dest.join("kprobe/summary.json")).expect("summary.json");
        assert!(summary.starts_with(r#"{"expected": 3}"#));
        fs::remove_dir_all(&dest).expect("clean up");
    }

    #[test]
    fn a_missing_end_marker_is_a_truncation() {
        let full = encoded_archive();
        let cut = &full[..full.len() / 2];
        let stream = format!(
            "KSPAN-RESULTS-BEGIN kprobe\n{cut}\nKSPAN-RESULTS-BEGIN fentry\n{full}KSPAN-RESULTS-END fentry\n\
             KSPAN-RESULTS-BEGIN tracepoint\n{cut}"
        );
        let archives = parse_stream(&stream);
        let outcome: Vec<(&str, bool)> = archives
            .iter()
            .map(|a| (a.mode.as_str(), a.archive.is_ok()))
            .collect();
        assert_eq!(
            outcome,
            vec![("kprobe", false), ("fentry", true), ("tracepoint", false)]
        );
        let error = archives[2]
            .archive
            .as_ref()
            .expect_err("truncated")
            .to_string();
        assert!(
            error.contains("truncated") && error.contains(END_MARKER),
            "{error}"
        );
    }

    #[test]
    fn a_cut_inside_the_gzip_data_fails_to_unpack() {
        let full = encoded_archive();
        let lines: Vec<&str> = full.lines().collect();
        let stream = format!(
            "KSPAN-RESULTS-BEGIN kprobe\n{}\nKSPAN-RESULTS-END kprobe\n",
            lines[..lines.len() - 1].join("\n")
        );
        let archives = parse_stream(&stream);
        let dest = std::env::temp_dir().join(format!("xtask-results-cut-{}", std::process::id()));
        let unpacked = archives[0]
            .archive
            .as_ref()
            .map(|archive| unpack(archive, &dest));
        assert!(
            !matches!(unpacked, Ok(Ok(()))),
            "a cut archive must not unpack cleanly"
        );
        let _ = fs::remove_dir_all(&dest);
    }

    #[test]
    fn unpacks_a_stream_file_per_mode() {
        let dir = std::env::temp_dir().join(format!("xtask-stream-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("temp dir");
        let stream_path = dir.join("results.serial");
        let stream = format!(
            "KSPAN-RESULTS-BEGIN kprobe\r\n{}KSPAN-RESULTS-END kprobe\r\nKSPAN-RESULTS-BEGIN fentry\r\nAAAA\r\n",
            encoded_archive()
        );
        fs::write(&stream_path, stream).expect("write stream");
        let unpacked = unpack_stream_file(&stream_path, &dir.join("results"));
        assert_eq!(unpacked.get(&ProbeRun::Kprobe), Some(&Ok(())));
        let fentry = unpacked.get(&ProbeRun::Fentry).expect("fentry listed");
        assert!(
            fentry
                .as_ref()
                .is_err_and(|error| error.contains("truncated")),
            "{fentry:?}"
        );
        assert!(!unpacked.contains_key(&ProbeRun::Tracepoint));
        assert!(dir.join("results/kprobe/summary.json").is_file());
        assert!(unpack_stream_file(&dir.join("missing"), &dir).is_empty());
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn garbage_between_markers_is_not_base64() {
        let archives = parse_stream(
            "KSPAN-RESULTS-BEGIN fentry\n%%% not base64 %%%\nKSPAN-RESULTS-END fentry\n",
        );
        assert!(matches!(
            archives[0].archive,
            Err(StreamError::NotBase64(_))
        ));
    }
}
