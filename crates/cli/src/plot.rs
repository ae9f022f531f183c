//! The SVG figures of every command: line charts (linear or log–log, one or
//! several side by side) and bar charts with whiskers.

use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One named line: (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// Axes and labels of a line chart.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub x_range: std::ops::Range<f64>,
    pub y_range: std::ops::Range<f64>,
    /// A dot at every point.
    pub markers: bool,
}

/// A bar (to `value`) with a whisker up to `whisker`, in palette colour
/// `color`.
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub whisker: f64,
    pub color: usize,
}

const SIZE: (u32, u32) = (860, 520);

/// The colours of the series, in order.
pub const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// The "throughput over time" chart of completions in each second: its one
/// series (named `label`) and its axes.
pub fn per_second_chart(label: &str, per_second: &[u64]) -> ([Series; 1], Axes<'static>) {
    let ymax = per_second.iter().copied().max().unwrap_or(1).max(1) as f64;
    let points = per_second
        .iter()
        .enumerate()
        .map(|(i, v)| (i as f64 + 0.5, *v as f64))
        .collect();
    let axes = Axes {
        title: "throughput over time",
        x_desc: "second",
        y_desc: "ops/s",
        x_range: 0.0..(per_second.len().max(1) as f64),
        y_range: 0.0..ymax * 1.1,
        markers: false,
    };
    ([(label.to_string(), points)], axes)
}

/// A line chart of `series` on linear axes.
pub fn line_chart(path: &Path, axes: Axes<'_>, series: &[Series]) -> Result<()> {
    side_by_side(path, SIZE, &[(axes, series)])
}

/// Line charts next to each other in one `size` figure.
pub fn side_by_side(path: &Path, size: (u32, u32), charts: &[(Axes<'_>, &[Series])]) -> Result<()> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    for (area, (axes, series)) in root
        .split_evenly((1, charts.len().max(1)))
        .iter()
        .zip(charts)
    {
        let mut chart = builder(area, axes)
            .build_cartesian_2d(axes.x_range.clone(), axes.y_range.clone())
            .map_err(plot_err)?;
        draw_lines(&mut chart, axes, series, false)?;
    }
    root.present().map_err(plot_err)
}

/// A line chart of `series` with both axes logarithmic (the ranges must be
/// positive).
pub fn log_log_chart(path: &Path, axes: Axes<'_>, series: &[Series]) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = builder(&root, &axes)
        .build_cartesian_2d(
            axes.x_range.clone().log_scale(),
            axes.y_range.clone().log_scale(),
        )
        .map_err(plot_err)?;
    draw_lines(&mut chart, &axes, series, true)?;
    root.present().map_err(plot_err)
}

fn builder<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    axes: &Axes<'_>,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(area);
    b.caption(axes.title, ("sans-serif", 20))
        .margin(18)
        .x_label_area_size(45)
        .y_label_area_size(80);
    b
}

/// The mesh, the lines and the legend of a line chart (`whole_labels`:
/// tick labels without decimals).
fn draw_lines<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    axes: &Axes<'_>,
    series: &[Series],
    whole_labels: bool,
) -> Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let whole = |v: &f64| format!("{v:.0}");
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(axes.x_desc).y_desc(axes.y_desc);
    if whole_labels {
        mesh.x_label_formatter(&whole).y_label_formatter(&whole);
    }
    mesh.draw().map_err(plot_err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if axes.markers {
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(plot_err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)
}

/// A bar chart: one labelled bar per entry, with its whisker.
pub fn bar_chart(path: &Path, title: &str, y_desc: &str, bars: &[Bar]) -> Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let top = bars.iter().map(|b| b.whisker).fold(0.0, f64::max) * 1.15 + 1.0;
    let n = bars.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(18)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5..n - 0.5, 0.0..top)
        .map_err(plot_err)?;
    let fmt = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < bars.len() {
            bars[i as usize].label.clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&fmt)
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)?;
    for (i, b) in bars.iter().enumerate() {
        let x = i as f64;
        let color = COLORS[b.color % COLORS.len()];
        let bar = Rectangle::new([(x - 0.3, 0.0), (x + 0.3, b.value)], color.filled());
        chart.draw_series(std::iter::once(bar)).map_err(plot_err)?;
        for line in [
            vec![(x, b.value), (x, b.whisker)],
            vec![(x - 0.1, b.whisker), (x + 0.1, b.whisker)],
        ] {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    line,
                    BLACK.stroke_width(2),
                )))
                .map_err(plot_err)?;
        }
    }
    root.present().map_err(plot_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes(title: &str) -> Axes<'_> {
        Axes {
            title,
            x_desc: "x",
            y_desc: "y",
            x_range: 1.0..100.0,
            y_range: 1.0..1000.0,
            markers: true,
        }
    }

    #[test]
    fn every_chart_kind_writes_an_svg_with_its_labels() {
        let dir = std::env::temp_dir().join(format!("byzscale-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = [
            (
                "first line".to_string(),
                vec![(1.0, 2.0), (10.0, 20.0), (90.0, 900.0)],
            ),
            ("second line".to_string(), vec![(2.0, 1.5), (50.0, 3.0)]),
        ];
        let bars = [
            Bar {
                label: "bar one".into(),
                value: 3.0,
                whisker: 4.0,
                color: 0,
            },
            Bar {
                label: "bar two".into(),
                value: 5.0,
                whisker: 9.0,
                color: 1,
            },
        ];
        let files = [
            (
                "line.svg",
                line_chart(&dir.join("line.svg"), axes("linear"), &lines),
            ),
            (
                "log.svg",
                log_log_chart(&dir.join("log.svg"), axes("log-log"), &lines),
            ),
            (
                "two.svg",
                side_by_side(
                    &dir.join("two.svg"),
                    (1000, 400),
                    &[(axes("left"), &lines[..1]), (axes("right"), &lines[1..])],
                ),
            ),
            (
                "bars.svg",
                bar_chart(&dir.join("bars.svg"), "bars", "ms", &bars),
            ),
        ];
        for (name, r) in files {
            r.unwrap_or_else(|e| panic!("{name}: {e}"));
            let svg = std::fs::read_to_string(dir.join(name)).unwrap();
            assert!(svg.starts_with("<svg"), "{name}");
            let labels: &[&str] = match name {
                "bars.svg" => &["bar one", "bar two", "bars"],
                "two.svg" => &["left", "right", "first line", "second line"],
                _ => &["first line", "second line"],
            };
            for l in labels {
                assert!(svg.contains(l), "{name} lacks {l:?}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
