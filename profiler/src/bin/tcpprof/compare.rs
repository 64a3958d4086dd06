//! `tcpprof compare A B`: one saved run against another (`bench --save FILE`, or `bench --json >
//! FILE`), each change marked significant or not; `--fail-on` rules set exit status 1 for CI.
use crate::outputs;
use anyhow::Result;
use clap::Args;
use profiler::compare::{self, FailOn, Run};
use profiler::printer::{self, Format};
use std::path::PathBuf;

#[derive(Args)]
pub struct CompareArgs {
    /// The run compared against (the baseline).
    a: PathBuf,
    /// The run compared.
    b: PathBuf,
    /// One JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Exit with status 1 when the change breaks this rule (repeatable): throughput-5% breaks
    /// when throughput fell by more than 5%, p99+10% when p99 grew by more than 10% (also p50,
    /// p99.9, max, errors). A change the tests find insignificant breaks no rule.
    #[arg(long, value_name = "RULE", value_parser = FailOn::parse)]
    fail_on: Vec<FailOn>,
    /// Write differential flame graphs of the two runs' stacks (saved with --profile --stacks
    /// --save): PREFIX-a-to-b.svg (B's widths, red where B has more) and PREFIX-b-to-a.svg.
    #[arg(long, value_name = "PREFIX")]
    flamegraph_diff: Option<PathBuf>,
    /// Write spectra.svg here: both runs' latency percentile spectra overlaid.
    #[arg(long, value_name = "DIR")]
    plots: Option<PathBuf>,
    /// Write one self-contained HTML page of the comparison here.
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
}

/// Compares; `Ok(false)` when a --fail-on rule broke.
pub fn run(args: CompareArgs) -> Result<bool> {
    if let Some(path) = &args.report {
        outputs::check_writable("--report", path)?;
    }
    let (a, b) = (Run::read(&args.a)?, Run::read(&args.b)?);
    let comparison = compare::compare(&a, &b, &args.fail_on);
    print!("{}", printer::comparison(&comparison, Format::json_if(args.json)));
    if let Some(prefix) = &args.flamegraph_diff {
        let name = |suffix: &str| {
            let mut path = prefix.clone().into_os_string();
            path.push(suffix);
            PathBuf::from(path)
        };
        for (from, to, suffix) in [(&a, &b, "-a-to-b.svg"), (&b, &a, "-b-to-a.svg")] {
            let title = format!("{} to {}", from.path, to.path);
            let svg = compare::differential_flamegraph(from, to, &title)?;
            outputs::write_file(&name(suffix), svg, "differential flame graph")?;
        }
    }
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir)?;
        let svg = printer::plots::compared_spectra(("A", &a.spectrum), ("B", &b.spectrum))?;
        outputs::write_file(&dir.join("spectra.svg"), svg, "spectra plot")?;
    }
    if let Some(path) = &args.report {
        let what = format!("tcpprof compare {} {}", a.path, b.path);
        outputs::write_file(
            path,
            printer::html::compare_report(&what, &comparison, &a, &b)?,
            "report",
        )?;
    }
    Ok(comparison.failed.is_empty())
}
