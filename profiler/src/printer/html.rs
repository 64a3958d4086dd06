//! One self-contained HTML report of a run or a sweep: its parameters, the summary, the limit
//! and its signals, the plots, the breakdown as a bar and the flame graph, when measured. No
//! external URL, script or font: the plots and the flame graph are inline SVG.
use super::plots::{self, IntervalPoint};
use crate::compare::{Comparison, Run};
use crate::find_max::FindMax;
use crate::report::{Report, Sweep};
use crate::{Part, printer};
use anyhow::Result;
use std::fmt::Write;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}\
h1{font-size:1.6em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em}\
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:13px}\
table.parameters td{padding:.1em 1em .1em 0}.limit{font-size:1.1em;font-weight:bold}\
.bar{display:flex;height:2em;border:1px solid #999;margin:.5em 0}.bar span{display:block;height:100%}\
.legend span{display:inline-block;margin-right:1.5em}.plot{margin:1em 0}.plot svg{display:block;max-width:100%;height:auto}.legend i{display:inline-block;width:1em;height:1em;\
margin-right:.3em;vertical-align:middle}";

/// Colours of the five parts, in the bar and its legend.
const PART_COLOURS: [&str; 5] = ["#4e79a7", "#59a14f", "#f28e2b", "#e15759", "#9c755f"];

/// A run's report. `what` names the run (its command line); `intervals` draw the timeline.
pub fn run_report(what: &str, r: &Report, intervals: &[IntervalPoint]) -> Result<String> {
    let mut out = page_start(what);
    if let Some(load) = &r.load {
        section(&mut out, "summary", "Summary", &pre(&printer::load_table(load)));
    }
    let limit = format!(
        "<p class=\"limit\">limit: {}: {}</p>{}",
        escape(r.limit.kind.as_str()),
        escape(&r.limit.reason),
        pre(&printer::signals_table(&r.signals, &r.limit))
    );
    section(&mut out, "limit", "Limit and signals", &limit);
    if let Some(load) = &r.load {
        let mut body = plot(&plots::latency_spectrum(load)?);
        if !intervals.is_empty() {
            body.push_str(&plot(&plots::timeline(intervals)?));
        }
        section(&mut out, "plots", "Latency and throughput", &body);
    }
    if let Some(profile) = &r.profile {
        let b = &profile.breakdown;
        let mut bar = String::from("<div class=\"bar\">");
        let mut legend = String::from("<div class=\"legend\">");
        for (part, colour) in Part::ALL.iter().zip(PART_COLOURS) {
            let pct = b.percent(*part);
            let name = part.name();
            let _ = write!(
                bar,
                "<span title=\"{name} {pct:.1}%\" style=\"width:{pct:.2}%;background:{colour}\"></span>"
            );
            let _ = write!(
                legend,
                "<span><i style=\"background:{colour}\"></i>{name} {pct:.1}%</span>"
            );
        }
        bar.push_str("</div>");
        legend.push_str("</div>");
        let table = pre(&printer::profile_table(profile));
        section(
            &mut out,
            "breakdown",
            "Where the server's time went",
            &format!("{bar}{legend}{table}"),
        );
    }
    if let Some(stacks) = r.profile.as_ref().and_then(|p| p.stacks.as_ref()) {
        let svg = String::from_utf8(printer::flamegraph(stacks, "the server's sampled stacks", Some(1150))?)?;
        section(&mut out, "flamegraph", "Flame graph", &framed_svg(&svg));
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

/// A sweep's report: the table with each level's limit, the knee, and its curve.
pub fn sweep_report(what: &str, sweep: &Sweep) -> Result<String> {
    let mut out = page_start(what);
    section(&mut out, "summary", "Sweep", &pre(&printer::sweep_table(sweep)));
    section(
        &mut out,
        "plots",
        "Throughput and latency by concurrency",
        &plot(&plots::sweep(sweep)?),
    );
    out.push_str("</body></html>\n");
    Ok(out)
}

/// A find-max search's report: the answer, each step, and p99 by offered rate.
pub fn find_max_report(what: &str, found: &FindMax, slo_p99_us: Option<f64>) -> Result<String> {
    let mut steps = printer::FIND_MAX_HEADER.to_string();
    found
        .steps
        .iter()
        .for_each(|s| steps.push_str(&printer::find_max_step(s)));
    let mut out = page_start(what);
    section(
        &mut out,
        "summary",
        "Find-max",
        &format!("<p>{}</p>{}", escape(&found.sentence()), pre(&steps)),
    );
    section(
        &mut out,
        "plots",
        "p99 by offered rate",
        &plot(&plots::find_max(found, slo_p99_us)?),
    );
    out.push_str("</body></html>\n");
    Ok(out)
}

/// Two runs compared: the tables, and both percentile spectra overlaid.
pub fn compare_report(what: &str, c: &Comparison, a: &Run, b: &Run) -> Result<String> {
    let mut out = page_start(what);
    let table = printer::comparison(c, printer::Format::Table);
    section(&mut out, "summary", "Comparison", &pre(&table));
    if !a.spectrum.is_empty() && !b.spectrum.is_empty() {
        let svg = plots::compared_spectra(("A", &a.spectrum), ("B", &b.spectrum))?;
        section(&mut out, "plots", "Latency by percentile, A and B", &plot(&svg));
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

fn page_start(what: &str) -> String {
    let when = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tcpprof: {}</title><style>{STYLE}</style>\
         </head><body>\n<h1>tcpprof report</h1>\n",
        escape(what)
    );
    let parameters = format!(
        "<table class=\"parameters\"><tr><td>command</td><td><code>{}</code></td></tr>\
         <tr><td>finished</td><td>{when} (seconds since the epoch)</td></tr>\
         <tr><td>tcpprof</td><td>{}</td></tr></table>",
        escape(what),
        env!("CARGO_PKG_VERSION")
    );
    section(&mut out, "parameters", "Run", &parameters);
    out
}

/// The flame graph in a frame of its own (`srcdoc`, so still no external file): its script
/// looks up the document's first `svg` element, which on this page is another plot.
fn framed_svg(svg: &str) -> String {
    let root = &svg[svg.find("<svg").unwrap_or(0)..];
    let height = root
        .split_once("height=\"")
        .and_then(|(_, rest)| rest.split('"').next()?.parse::<u32>().ok())
        .unwrap_or(800);
    format!(
        "<iframe title=\"flame graph\" style=\"width:100%;height:{}px;border:0\" srcdoc=\"{}\"></iframe>",
        height + 20,
        escape(svg)
    )
}

/// A plot in a block of its own.
fn plot(svg: &str) -> String {
    format!("<div class=\"plot\">{svg}</div>")
}

fn section(out: &mut String, id: &str, title: &str, body: &str) {
    let _ = writeln!(out, "<section id=\"{id}\"><h2>{title}</h2>\n{body}\n</section>");
}

fn pre(text: &str) -> String {
    format!("<pre>{}</pre>", escape(text))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
