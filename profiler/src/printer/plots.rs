//! Plots as SVG (plotters' SVG backend; no font files: text goes out as SVG text): the latency
//! percentile spectrum, latency and throughput over a run, and a sweep's curve with its knee.
use crate::find_max::FindMax;
use crate::live::{Interval, Sink};
use crate::report::Sweep;
use anyhow::{Result, anyhow};
use bench::load::{LatencyHistogram, LoadReport};
use plotters::prelude::*;
use std::time::Duration;

const SIZE: (u32, u32) = (900, 480);

/// A chart with our caption, margins and label areas on a drawing area (a macro: the chart
/// borrows the area, which a function signature cannot say as loosely as plotters needs).
macro_rules! new_chart {
    ($area:expr, $caption:expr, $x:expr, $y:expr) => {
        ChartBuilder::on($area)
            .caption($caption, FONT)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d($x, $y)
            .map_err(plot_error)
    };
}
const FONT: (&str, u32) = ("sans-serif", 15);

/// Draws `points` as a line in `color`, named `name` in the legend.
macro_rules! labelled_line {
    ($chart:expr, $points:expr, $name:expr, $color:expr) => {{
        let color = $color;
        $chart
            .draw_series(LineSeries::new($points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label($name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }};
}

/// A line of a plot: its name, the value it draws, its colour.
type Line<T> = (&'static str, fn(&T) -> u64, RGBColor);

/// One interval's figures, as the timeline plots them and `--save` keeps them.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntervalPoint {
    /// End of the interval, seconds since the run's start, and its length.
    pub t_s: f64,
    pub length_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub throughput_rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// The timeline's points, gathered from the live loop's load intervals.
pub struct Timeline {
    /// The intervals' length: a sliver much shorter (a worker finishing just past a boundary)
    /// would plot as a spike, and is left out.
    length: Duration,
    pub points: Vec<IntervalPoint>,
}

impl Timeline {
    pub fn new(length: Duration) -> Timeline {
        Timeline {
            length,
            points: Vec::new(),
        }
    }
}

impl Sink for Timeline {
    fn take(&mut self, interval: &Interval) {
        let Interval::Load(i) = interval else { return };
        if i.length < self.length / 10 {
            return;
        }
        let l = i.latency.summary();
        self.points.push(IntervalPoint {
            t_s: (i.start + i.length).as_secs_f64(),
            length_s: i.length.as_secs_f64(),
            requests: i.requests,
            errors: i.errors.total(),
            throughput_rps: i.throughput_rps(),
            p50_us: l.p50_us,
            p99_us: l.p99_us,
            p999_us: l.p999_us,
            max_us: l.max_us,
        });
    }
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the plot: {e:?}")
}

/// Latency against percentile on HdrHistogram's 1/(1-p) axis: corrected and, in open loop,
/// uncorrected (from the actual send), as HdrHistogram's plotter draws .hgrm files.
pub fn latency_spectrum(load: &LoadReport) -> Result<String> {
    let mut series = vec![("latency", &load.histogram, BLUE)];
    if let Some(uncorrected) = &load.histogram_uncorrected {
        series[0].0 = "from the intended send (corrected)";
        series.push(("from the actual send (uncorrected)", uncorrected, RED));
    }
    let lines: Vec<Series> = series
        .iter()
        .map(|(name, h, color)| (*name, spectrum(h), *color))
        .collect();
    spectra(&lines)
}

/// Two runs' percentile spectra overlaid (`compare`): each (percentile, us) point of a saved run.
pub fn compared_spectra(a: (&str, &[(f64, u64)]), b: (&str, &[(f64, u64)])) -> Result<String> {
    let line = |points: &[(f64, u64)]| {
        points
            .iter()
            .filter(|(pct, _)| *pct < 100.0)
            .map(|&(pct, us)| (1.0 / (1.0 - pct / 100.0), (us as f64).max(1.0)))
            .collect::<Vec<_>>()
    };
    spectra(&[(a.0, line(a.1), BLUE), (b.0, line(b.1), RED)])
}

/// A named line of (x, y) points in a colour.
type Series<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);

/// Latency against percentile on the 1/(1-p) axis, a line per series.
fn spectra(series: &[Series]) -> Result<String> {
    let x_max = series.iter().flat_map(|s| &s.1).map(|p| p.0).fold(10.0, f64::max) * 1.5;
    let y_max = series.iter().flat_map(|s| &s.1).map(|p| p.1).fold(10.0, f64::max) * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = new_chart!(
            &root,
            "Latency by percentile",
            (1.0..x_max).log_scale(),
            (1.0..y_max).log_scale()
        )?;
        chart
            .configure_mesh()
            .x_desc("percentile (1/(1-p): 10 = p90, 100 = p99, 1000 = p99.9)")
            .y_desc("latency (us)")
            .label_style(FONT)
            .draw()
            .map_err(plot_error)?;
        for (name, points, color) in series {
            labelled_line!(chart, points.iter().copied(), *name, *color);
        }
        legend(&mut chart)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// (1/(1-p), latency) for p below 1, five ticks per half-distance as in a .hgrm.
fn spectrum(h: &LatencyHistogram) -> Vec<(f64, f64)> {
    h.inner()
        .iter_quantiles(5)
        .filter(|v| v.quantile_iterated_to() < 1.0)
        .map(|v| {
            (
                1.0 / (1.0 - v.quantile_iterated_to()),
                (v.value_iterated_to() as f64).max(1.0),
            )
        })
        .collect()
}

/// Throughput (top) and latency p50, p99 and max (bottom) per interval of a run.
pub fn timeline(points: &[IntervalPoint]) -> Result<String> {
    let t_max = points.iter().map(|p| p.t_s).fold(1.0, f64::max);
    let rps_max = points.iter().map(|p| p.throughput_rps).fold(1.0, f64::max) * 1.15;
    let us_max = points.iter().map(|p| p.max_us as f64).fold(10.0, f64::max) * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, SIZE.1 * 3 / 2)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (top, bottom) = root.split_vertically(SIZE.1 * 3 / 5);
        let mut chart = new_chart!(&top, "Throughput per interval", 0.0..t_max, 0.0..rps_max)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("requests/s")
            .label_style(FONT)
            .draw()
            .map_err(plot_error)?;
        let line = points.iter().map(|p| (p.t_s, p.throughput_rps));
        chart
            .draw_series(LineSeries::new(line, BLUE.stroke_width(2)))
            .map_err(plot_error)?;
        let mut chart = new_chart!(&bottom, "Latency per interval", 0.0..t_max, (1.0..us_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("latency (us)")
            .label_style(FONT)
            .draw()
            .map_err(plot_error)?;
        let lines: [Line<IntervalPoint>; 3] = [
            ("p50", |p| p.p50_us, GREEN),
            ("p99", |p| p.p99_us, BLUE),
            ("max", |p| p.max_us, RED),
        ];
        for (name, value, color) in lines {
            let line = points.iter().map(|p| (p.t_s, (value(p) as f64).max(1.0)));
            labelled_line!(chart, line, name, color);
        }
        legend(&mut chart)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Throughput (top) and p50 and p99 (bottom) against concurrency, the knee marked.
pub fn sweep(sweep: &Sweep) -> Result<String> {
    let rows: Vec<&LoadReport> = sweep.levels.iter().filter_map(|l| l.load.as_ref()).collect();
    let c_max = rows.iter().map(|r| r.concurrency as f64).fold(1.0, f64::max) * 1.5;
    let rps_max = rows.iter().map(|r| r.throughput_rps).fold(1.0, f64::max) * 1.15;
    let us_max = rows.iter().map(|r| r.latency_p99_us as f64).fold(10.0, f64::max) * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, SIZE.1 * 3 / 2)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let (top, bottom) = root.split_vertically(SIZE.1 * 3 / 4);
        let caption = match sweep.saturation {
            Some(knee) => format!("Throughput by concurrency (knee at {knee})"),
            None => "Throughput by concurrency (no knee)".to_string(),
        };
        let mut chart = new_chart!(&top, &caption, (1.0..c_max).log_scale(), 0.0..rps_max)?;
        chart
            .configure_mesh()
            .x_desc("connections")
            .y_desc("requests/s")
            .label_style(FONT)
            .draw()
            .map_err(plot_error)?;
        let line: Vec<(f64, f64)> = rows.iter().map(|r| (r.concurrency as f64, r.throughput_rps)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), BLUE.stroke_width(2)))
            .map_err(plot_error)?;
        chart
            .draw_series(line.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
            .map_err(plot_error)?;
        if let Some(knee) = sweep.saturation {
            let x = knee as f64;
            labelled_line!(
                chart,
                [(x, 0.0), (x, rps_max)],
                format!("knee: {knee} connections"),
                RED
            );
            legend(&mut chart)?;
        }
        let mut chart = new_chart!(
            &bottom,
            "Latency by concurrency",
            (1.0..c_max).log_scale(),
            (1.0..us_max).log_scale()
        )?;
        chart
            .configure_mesh()
            .x_desc("connections")
            .y_desc("latency (us)")
            .label_style(FONT)
            .draw()
            .map_err(plot_error)?;
        let lines: [Line<LoadReport>; 2] = [
            ("p50", |r| r.latency_p50_us, GREEN),
            ("p99", |r| r.latency_p99_us, BLUE),
        ];
        for (name, value, color) in lines {
            let line = rows.iter().map(|r| (r.concurrency as f64, (value(r) as f64).max(1.0)));
            labelled_line!(chart, line, name, color);
        }
        legend(&mut chart)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// A find-max search: each open-loop step's p99 against its offered rate (held or not), the SLO's
/// p99 objective as a line when it has one, and the answer marked.
pub fn find_max(found: &FindMax, slo_p99_us: Option<f64>) -> Result<String> {
    let steps: Vec<(f64, f64, bool)> = found
        .steps
        .iter()
        .filter_map(|s| Some((s.offered_rps?, (s.p99_us as f64).max(1.0), s.holds)))
        .collect();
    let rate_max = steps.iter().map(|s| s.0).fold(1.0, f64::max) * 1.15;
    let us_max = steps.iter().map(|s| s.1).chain(slo_p99_us).fold(10.0, f64::max) * 2.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let caption = match found.rate {
            Some(rate) => format!("p99 by offered rate: max {rate:.0} req/s with {}", found.slo),
            None => format!("p99 by offered rate: no rate held {}", found.slo),
        };
        let mut chart = new_chart!(&root, &caption, 0.0..rate_max, (1.0..us_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc("offered requests/s")
            .y_desc("p99 latency (us)")
            .label_style(FONT)
            .draw()
            .map_err(plot_error)?;
        for (held, color, name) in [(true, GREEN, "step held"), (false, RED, "step failed")] {
            let points: Vec<(f64, f64)> = steps.iter().filter(|s| s.2 == held).map(|s| (s.0, s.1)).collect();
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 5, color.filled())))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
        }
        if let Some(limit) = slo_p99_us {
            labelled_line!(chart, [(0.0, limit), (rate_max, limit)], "SLO p99", BLACK);
        }
        if let Some(rate) = found.rate {
            labelled_line!(
                chart,
                [(rate, 1.0), (rate, us_max)],
                format!("max {rate:.0} req/s"),
                BLUE
            );
        }
        legend(&mut chart)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn legend<'a, X: Ranged, Y: Ranged>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(FONT)
        .draw()
        .map_err(plot_error)
}
