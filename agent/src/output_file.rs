//! The files kspan writes for others to read (`--ready-file`, `--summary-file`). kspan often
//! runs as root in a directory others may write: nothing they plant there (a symlink, a device
//! node, a file under the temporary name) can make it write anywhere else. Each file is checked
//! before anything is loaded, then written as a new file in its directory (created exclusively,
//! never through a symlink, mode 0600 unless `--output-file-mode` says otherwise) and renamed over the target, which must be absent or a
//! regular file. The directory is opened once, at the check, and used by descriptor from then on.

use std::{
    collections::hash_map::RandomState,
    ffi::OsString,
    hash::{BuildHasher as _, Hasher as _},
    io::Write as _,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{open, openat, renameat, AtFlags, OFlag},
    sys::stat::{fchmod, fstatat, Mode, SFlag},
    unistd::{faccessat, unlinkat, AccessFlags, UnlinkatFlags},
};

/// A file kspan cannot write safely: the option, the path and why.
#[derive(Debug, thiserror::Error)]
#[error("{option} {}: {reason}", path.display())]
pub struct OutputFileError {
    /// The option that named the file (`--ready-file`).
    option: &'static str,
    /// The path as given.
    path: PathBuf,
    /// What is wrong, and what the user can do.
    reason: String,
}

/// How many temporary names to try before giving up (each is random: a clash means someone is
/// planting files under kspan's temporary names).
const CREATE_ATTEMPTS: usize = 8;

/// Who may read an output file unless the user says otherwise: kspan's user alone.
pub const DEFAULT_MODE: u32 = 0o600;

/// A checked output file, ready to be written (any number of times).
#[derive(Debug)]
pub struct OutputFile {
    option: &'static str,
    path: PathBuf,
    /// The directory, opened at the check: later renames of its path do not move the writes.
    dir: OwnedFd,
    /// The file's name in `dir`.
    name: OsString,
    /// Permission bits of the file written.
    mode: Mode,
}

impl OutputFile {
    /// Checks that `path`'s directory exists, is a directory kspan may write, and that `path`
    /// is absent or a regular file (not a symlink, not a device, FIFO, socket or directory).
    pub fn check(option: &'static str, path: &Path) -> Result<Self, OutputFileError> {
        let refuse = |reason: String| OutputFileError {
            option,
            path: path.to_path_buf(),
            reason,
        };
        let name = path
            .file_name()
            .ok_or_else(|| refuse("it names no file (give a file name, not a directory)".into()))?
            .to_os_string();
        let dir_path = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir = open(
            dir_path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| {
            refuse(match errno {
                Errno::ENOENT => format!("its directory {} does not exist", dir_path.display()),
                Errno::ENOTDIR => format!("{} is not a directory", dir_path.display()),
                other => format!(
                    "cannot open its directory {}: {}",
                    dir_path.display(),
                    other.desc()
                ),
            })
        })?;
        // The effective ids and capabilities decide, as they will for the write.
        faccessat(
            &dir,
            ".",
            AccessFlags::W_OK | AccessFlags::X_OK,
            AtFlags::AT_EACCESS,
        )
        .map_err(|errno| {
            refuse(format!(
                "kspan (uid {}) cannot write in {}: {}",
                nix::unistd::geteuid(),
                dir_path.display(),
                errno.desc()
            ))
        })?;
        let file = Self {
            option,
            path: path.to_path_buf(),
            dir,
            name,
            mode: Mode::from_bits_truncate(DEFAULT_MODE),
        };
        file.check_target().map_err(refuse)?;
        Ok(file)
    }

    /// Writes the file with these permission bits (at most 0o777) instead of 0600.
    pub fn with_mode(mut self, mode: u32) -> Self {
        self.mode = Mode::from_bits_truncate(mode & 0o777);
        self
    }

    /// Replaces the file with `contents`: written to a new file, flushed to disk, renamed over
    /// the target. The target is checked again just before, so a symlink or device planted
    /// since the start is refused too (and a symlink planted between that check and the rename
    /// is replaced itself: a rename never follows one).
    pub fn write(&self, contents: &[u8]) -> Result<(), OutputFileError> {
        let refuse = |reason: String| OutputFileError {
            option: self.option,
            path: self.path.clone(),
            reason,
        };
        self.check_target().map_err(refuse)?;
        let (temporary, file) = self.create_temporary().map_err(refuse)?;
        let mut file = std::fs::File::from(file);
        let written = file
            .write_all(contents)
            // On disk before it has the target's name: a crash leaves the old file or the new.
            .and_then(|()| file.sync_data())
            .map_err(|error| format!("writing its new contents: {error}"))
            .and_then(|()| self.check_target())
            .and_then(|()| {
                renameat(
                    &self.dir,
                    temporary.as_os_str(),
                    &self.dir,
                    self.name.as_os_str(),
                )
                .map_err(|errno| format!("renaming the new file into place: {}", errno.desc()))
            });
        if written.is_err() {
            let _ = unlinkat(&self.dir, temporary.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
        written.map_err(refuse)
    }

    /// The target is absent or a regular file; anything else is refused with the reason.
    fn check_target(&self) -> Result<(), String> {
        let stat = match fstatat(
            &self.dir,
            self.name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => return Ok(()),
            Err(errno) => return Err(format!("cannot inspect it: {}", errno.desc())),
        };
        let kind = match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFREG => return Ok(()),
            SFlag::S_IFLNK => {
                return Err(
                    "it is a symbolic link: kspan does not write through links (give the path \
                     of a regular file, or remove the link)"
                        .into(),
                )
            }
            SFlag::S_IFDIR => "a directory",
            SFlag::S_IFCHR => "a character device",
            SFlag::S_IFBLK => "a block device",
            SFlag::S_IFIFO => "a FIFO",
            SFlag::S_IFSOCK => "a socket",
            _ => "not a regular file",
        };
        Err(format!(
            "it is {kind}: kspan only replaces regular files (give a new path)"
        ))
    }

    /// A new, empty file of kspan's own under a random name in the directory: `O_EXCL` and
    /// `O_NOFOLLOW`, so nothing already there under that name, link or not, is ever opened.
    fn create_temporary(&self) -> Result<(OsString, OwnedFd), String> {
        let mut last = Errno::EEXIST;
        for _ in 0..CREATE_ATTEMPTS {
            let temporary = OsString::from(format!(
                ".kspan-{}-{:016x}.tmp",
                std::process::id(),
                RandomState::new().build_hasher().finish()
            ));
            match openat(
                &self.dir,
                temporary.as_os_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::S_IRUSR | Mode::S_IWUSR,
            ) {
                // Widened only now, on kspan's own file, and exactly as asked (the umask aside).
                Ok(file) => {
                    return match fchmod(&file, self.mode) {
                        Ok(()) => Ok((temporary, file)),
                        Err(errno) => {
                            let _ = unlinkat(
                                &self.dir,
                                temporary.as_os_str(),
                                UnlinkatFlags::NoRemoveDir,
                            );
                            Err(format!("setting the new file's mode: {}", errno.desc()))
                        }
                    };
                }
                Err(errno @ Errno::EEXIST) => last = errno,
                Err(errno) => {
                    return Err(format!("creating a new file beside it: {}", errno.desc()))
                }
            }
        }
        Err(format!(
            "creating a new file beside it: {} ({CREATE_ATTEMPTS} random names were taken)",
            last.desc()
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, FileTypeExt as _, PermissionsExt as _};

    use super::*;

    /// An empty directory of the test's own.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("kspan-output-file-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The reason `check` gives, without the option and path.
    fn refusal(path: &Path) -> String {
        let message = OutputFile::check("--ready-file", path)
            .expect_err("the check should refuse")
            .to_string();
        let prefix = format!("--ready-file {}: ", path.display());
        message
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("`{message}` should start with `{prefix}`"))
            .to_string()
    }

    #[test]
    fn writes_a_new_file_and_replaces_a_regular_one_mode_0600() {
        let dir = scratch("regular");
        let path = dir.join("summary.json");
        let file = OutputFile::check("--summary-file", &path).unwrap();
        file.write(b"first\n").unwrap();
        file.write(b"second\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second\n");
        let metadata = std::fs::symlink_metadata(&path).unwrap();
        assert!(metadata.file_type().is_file());
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        assert_eq!(entries(&dir), ["summary.json"], "temporary files left");
        // A regular file already there at the check is fine too.
        OutputFile::check("--summary-file", &path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn writes_the_mode_the_user_asks_for_whatever_the_umask() {
        let dir = scratch("mode");
        let path = dir.join("ready");
        let file = OutputFile::check("--ready-file", &path)
            .unwrap()
            .with_mode(0o644);
        file.write(b"probe=tracepoint\n").unwrap();
        let mode = std::fs::symlink_metadata(&path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644);
        // Only permission bits: no setuid, setgid or sticky bit, whatever is asked.
        OutputFile::check("--ready-file", &path)
            .unwrap()
            .with_mode(0o4755)
            .write(b"x")
            .unwrap();
        let mode = std::fs::symlink_metadata(&path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlink_target_is_refused_and_what_it_points_to_untouched() {
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.join("summary.json");
        symlink(&victim, &path).unwrap();
        assert!(
            refusal(&path).starts_with("it is a symbolic link: kspan does not write through links"),
            "{}",
            refusal(&path)
        );
        // A dangling link too: writing through it would create its target.
        let dangling = dir.join("dangling");
        symlink(dir.join("would-be-created"), &dangling).unwrap();
        assert!(refusal(&dangling).starts_with("it is a symbolic link"));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(entries(&dir), ["dangling", "summary.json", "victim"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn special_files_are_refused_by_kind() {
        let dir = scratch("special");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::S_IRUSR | Mode::S_IWUSR).unwrap();
        let cases = [
            (fifo.clone(), "a FIFO"),
            (dir.join("."), "a directory"),
            (PathBuf::from("/dev/null"), "a character device"),
        ];
        for (path, kind) in cases {
            assert_eq!(
                refusal(&path),
                format!("it is {kind}: kspan only replaces regular files (give a new path)"),
                "{}",
                path.display()
            );
        }
        assert!(std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo());
        assert!(std::fs::symlink_metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_or_unusable_directory_is_refused() {
        let dir = scratch("directory");
        let plain = dir.join("plain");
        std::fs::write(&plain, "").unwrap();
        let missing = dir.join("missing");
        let cases = [
            (
                missing.join("ready"),
                format!("its directory {} does not exist", missing.display()),
            ),
            (
                plain.join("ready"),
                format!("{} is not a directory", plain.display()),
            ),
            (
                PathBuf::from("/"),
                "it names no file (give a file name, not a directory)".to_string(),
            ),
            (
                dir.join(".."),
                "it names no file (give a file name, not a directory)".to_string(),
            ),
        ];
        for (path, expected) in cases {
            assert_eq!(refusal(&path), expected, "{}", path.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The case: a symlink under the name the ready file's temporary once had.
    #[test]
    fn a_planted_partial_file_link_is_never_followed() {
        let dir = scratch("partial");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        symlink(&victim, dir.join("ready.partial")).unwrap();
        let path = dir.join("ready");
        OutputFile::check("--ready-file", &path)
            .unwrap()
            .write(b"probe=tracepoint\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "probe=tracepoint\n"
        );
        assert_eq!(entries(&dir), ["ready", "ready.partial", "victim"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlink_planted_after_the_check_is_refused_at_the_write() {
        let dir = scratch("late");
        let victim = dir.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.join("summary.json");
        let file = OutputFile::check("--summary-file", &path).unwrap();
        symlink(&victim, &path).unwrap();
        let error = file.write(b"{}").unwrap_err().to_string();
        assert!(
            error.contains("it is a symbolic link: kspan does not write through links"),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(
            entries(&dir),
            ["summary.json", "victim"],
            "temporary files left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The directory is the one checked at the start, even if its path names another later.
    #[test]
    fn writes_go_to_the_directory_checked_at_the_start() {
        let base = scratch("pinned");
        let dir = base.join("out");
        std::fs::create_dir(&dir).unwrap();
        let file = OutputFile::check("--ready-file", &dir.join("ready")).unwrap();
        std::fs::rename(&dir, base.join("moved")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        file.write(b"x").unwrap();
        assert_eq!(entries(&dir), Vec::<String>::new());
        assert_eq!(entries(&base.join("moved")), ["ready"]);
        let _ = std::fs::remove_dir_all(&base);
    }
}
