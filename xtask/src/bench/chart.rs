//! The results as a PNG: per-call cost by variant, throughput by load and, with `--vm`, the
//! guests' ratios to the bare call. Text is drawn with a Debian font found at run time.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{anyhow, bail, Context as _, Result};
use kspan_e2e::bench::overhead::Variant;
use plotters::{
    coord::Shift,
    prelude::*,
    style::{register_font, FontStyle},
};

use super::results::{BenchResults, HostResults, VmResults};
use crate::{command, setup::CHART_FONT_PACKAGE as FONT_PACKAGE};

/// The font file within the font package (`setup --bench` installs it).
const FONT_FILE: &str = "DejaVuSans.ttf";

/// The family name the chart's text styles ask for.
const FAMILY: &str = "sans-serif";

const WIDTH: u32 = 1600;
const ROW_HEIGHT: u32 = 620;

const GREY: RGBColor = RGBColor(150, 150, 150);
const BLUE: RGBColor = RGBColor(66, 114, 196);
const ORANGE: RGBColor = RGBColor(230, 126, 34);
const GREEN: RGBColor = RGBColor(76, 160, 90);

fn variant_color(variant: Variant) -> RGBColor {
    match variant {
        Variant::Bare => GREY,
        Variant::Floor => BLUE,
        Variant::Kspan | Variant::KspanBaseline => ORANGE,
        Variant::Bpftrace => GREEN,
    }
}

/// Draws `results` into `path`.
pub fn draw(results: &BenchResults, path: &Path) -> Result<()> {
    load_font()?;
    let rows = if results.vm.is_some() { 2 } else { 1 };
    let root = BitMapBackend::new(path, (WIDTH, ROW_HEIGHT * rows)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (top, bottom) = root.split_vertically(ROW_HEIGHT);
    let (left, right) = top.split_horizontally(WIDTH / 2);
    let smoke = if results.smoke { " [smoke run]" } else { "" };
    overhead_panel(&left, &results.host, smoke)?;
    throughput_panel(&right, &results.host, smoke)?;
    if let Some(vm) = &results.vm {
        vm_panel(&bottom, vm)?;
    }
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("writing {}", path.display()))
}

/// Registers the font for [`FAMILY`].
fn load_font() -> Result<()> {
    let path = font_path()?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // plotters keeps fonts for the life of the process; one chart per run, so leak it.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{} is not a font plotters can read", path.display()))
}

/// Where the font package put [`FONT_FILE`], as dpkg knows it.
fn font_path() -> Result<PathBuf> {
    let files =
        command::stdout_of(Command::new("dpkg").args(["-L", FONT_PACKAGE])).with_context(|| {
            format!("the chart needs {FONT_PACKAGE}: run `cargo xtask setup --bench`")
        })?;
    match files
        .lines()
        .find(|line| line.ends_with(&format!("/{FONT_FILE}")))
    {
        Some(path) => Ok(PathBuf::from(path)),
        None => bail!("{FONT_PACKAGE} has no {FONT_FILE}"),
    }
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(
    error: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("drawing the chart: {error}")
}

fn text(size: u32) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// Labels integer x positions with `names`; other positions stay blank.
fn name_at(names: &[String]) -> impl Fn(&f64) -> String + '_ {
    move |x: &f64| {
        let nearest = x.round();
        if (x - nearest).abs() > 0.01 || nearest < 0.0 {
            return String::new();
        }
        names.get(nearest as usize).cloned().unwrap_or_default()
    }
}

/// `1.5k`, `20k`, `1.2M`.
fn short_number(value: f64) -> String {
    match value {
        v if v >= 1e6 => format!("{}M", trim(v / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(v / 1e3)),
        v => trim(v),
    }
}

fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.trim_end_matches(".0").to_string()
}

fn overhead_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    host: &HostResults,
    smoke: &str,
) -> Result<()> {
    let overhead = &host.overhead;
    let variants = &overhead.variants;
    let names: Vec<String> = variants
        .iter()
        .map(|v| v.variant.name().to_string())
        .collect();
    let top = variants
        .iter()
        .map(|v| v.ns_per_call.max)
        .fold(1.0, f64::max)
        * 1.2;
    let title = format!("Per-call cost, host ({} probes){smoke}", overhead.probe);
    let mut chart = ChartBuilder::on(area)
        .caption(title, text(26))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.6..(variants.len() as f64 - 0.4), 0.0..top)
        .map_err(plot_error)?;
    let formatter = name_at(&names);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(4 * variants.len() + 1)
        .x_label_formatter(&formatter)
        .y_label_formatter(&|y: &f64| format!("{y:.0}"))
        .y_desc("ns per call: median, whiskers min–max")
        .label_style(text(18))
        .axis_desc_style(text(18))
        .draw()
        .map_err(plot_error)?;
    for (i, summary) in variants.iter().enumerate() {
        let x = i as f64;
        let color = variant_color(summary.variant);
        let spread = summary.ns_per_call;
        chart
            .draw_series([Rectangle::new(
                [(x - 0.3, 0.0), (x + 0.3, spread.median)],
                color.filled(),
            )])
            .map_err(plot_error)?;
        chart
            .draw_series([ErrorBar::new_vertical(
                x,
                spread.min,
                spread.median,
                spread.max,
                BLACK.stroke_width(2),
                16,
            )])
            .map_err(plot_error)?;
        let label = match (summary.ratio_to_bare, summary.added_ns) {
            (Some(ratio), Some(added)) => format!("×{:.2}  {added:+.0} ns", ratio.median),
            _ => format!("{:.0} ns", spread.median),
        };
        chart
            .draw_series([Text::new(
                label,
                (x - 0.28, spread.max + top * 0.03),
                text(18),
            )])
            .map_err(plot_error)?;
    }
    Ok(())
}

fn throughput_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    host: &HostResults,
    smoke: &str,
) -> Result<()> {
    let rows = &host.throughput;
    // Short enough for six loads side by side.
    let names: Vec<String> = rows
        .iter()
        .map(|row| {
            row.label
                .replace("/s, log records off", "/s no logs")
                .replace("/s, gzip", "/s gzip")
        })
        .collect();
    let top = rows
        .iter()
        .map(|row| row.calls_per_second.max(row.spans_per_second))
        .fold(10.0, f64::max)
        * 4.0;
    let title = format!(
        "Throughput, host ({} s per load){smoke}",
        host.throughput_seconds
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, text(26))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.6..(rows.len() as f64 - 0.4), (1.0..top).log_scale())
        .map_err(plot_error)?;
    let formatter = name_at(&names);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(4 * rows.len() + 1)
        .x_label_formatter(&formatter)
        .y_label_formatter(&|y: &f64| short_number(*y))
        .y_desc("per second (log scale)")
        .label_style(text(18))
        .axis_desc_style(text(18))
        .draw()
        .map_err(plot_error)?;
    let series = [("calls made", BLUE, -0.36), ("spans received", ORANGE, 0.0)];
    for (name, color, offset) in series {
        let bars = rows.iter().enumerate().map(|(i, row)| {
            let value = if offset < 0.0 {
                row.calls_per_second
            } else {
                row.spans_per_second
            };
            let x = i as f64 + offset;
            Rectangle::new([(x, 1.0), (x + 0.34, value.max(1.0))], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    // Two lines over each load: loss, then kspan's CPU per 1,000 calls.
    let notes = rows.iter().enumerate().flat_map(|(i, row)| {
        let loss = if row.lossless() {
            "no loss".to_string()
        } else {
            format!(
                "lost {:.1}%",
                100.0 * row.lost as f64 / row.run.calls_made.max(1) as f64
            )
        };
        let cpu = format!("{:.2} ms/1k", row.cpu_ms_per_1k_calls);
        let height = row.calls_per_second.max(row.spans_per_second).max(1.0);
        [(loss, 2.2), (cpu, 1.3)]
            .map(|(note, above)| Text::new(note, (i as f64 - 0.35, height * above), text(16)))
    });
    chart.draw_series(notes).map_err(plot_error)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(text(18))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

fn vm_panel(area: &DrawingArea<BitMapBackend, Shift>, vm: &VmResults) -> Result<()> {
    let guests = &vm.guests;
    let names: Vec<String> = guests
        .iter()
        .map(|g| format!("{} {}", g.kernel_name, g.overhead.probe))
        .collect();
    let shown = [Variant::Floor, Variant::Kspan];
    let ratio = |guest: usize, variant: Variant| {
        guests[guest]
            .overhead
            .variants
            .iter()
            .find(|s| s.variant == variant)
            .and_then(|s| s.ratio_to_bare)
    };
    let top = (0..guests.len())
        .flat_map(|g| shown.map(|v| ratio(g, v).map_or(1.0, |r| r.max)))
        .fold(1.5, f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Per-call cost in QEMU guests, × the bare call (emulated CPU: ratios only)",
            text(26),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.6..(guests.len().max(1) as f64 - 0.4), 0.0..top)
        .map_err(plot_error)?;
    let formatter = name_at(&names);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(4 * guests.len().max(1) + 1)
        .x_label_formatter(&formatter)
        .y_label_formatter(&|y: &f64| format!("{y:.1}"))
        .y_desc("× bare: median, whiskers min–max")
        .label_style(text(18))
        .axis_desc_style(text(18))
        .draw()
        .map_err(plot_error)?;
    for (slot, variant) in shown.into_iter().enumerate() {
        let offset = -0.36 + 0.36 * slot as f64;
        let color = variant_color(variant);
        let present: Vec<(f64, _)> = (0..guests.len())
            .filter_map(|g| Some((g as f64 + offset, ratio(g, variant)?)))
            .collect();
        chart
            .draw_series(
                present.iter().map(|(x, r)| {
                    Rectangle::new([(*x, 0.0), (x + 0.34, r.median)], color.filled())
                }),
            )
            .map_err(plot_error)?
            .label(variant.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart
            .draw_series(present.iter().map(|(x, r)| {
                ErrorBar::new_vertical(x + 0.17, r.min, r.median, r.max, BLACK.stroke_width(2), 12)
            }))
            .map_err(plot_error)?;
        chart
            .draw_series(present.iter().map(|(x, r)| {
                Text::new(
                    format!("×{:.2}", r.median),
                    (*x, r.max + top * 0.03),
                    text(18),
                )
            }))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(text(18))
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(short_number(1000.0), "1k");
        assert_eq!(short_number(1_500_000.0), "1.5M");
        assert_eq!(short_number(10.0), "10");
    }

    #[test]
    fn only_whole_positions_get_names() {
        let names = vec!["a".to_string(), "b".to_string()];
        let label = name_at(&names);
        assert_eq!(label(&1.0), "b");
        assert_eq!(label(&0.5), "");
        assert_eq!(label(&-0.5), "");
        assert_eq!(label(&7.0), "");
    }
}
