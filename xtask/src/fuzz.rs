//! `cargo xtask fuzz`: every cargo-fuzz target in `fuzz/` for a while on the nightly toolchain,
//! each from a copy of its committed seed corpus (so that runs never grow `fuzz/corpus`), then a
//! table of what libFuzzer did. Fails when a target crashes, naming the input that did it.
use crate::setup::{run, stdout_of};
use anyhow::{Context, Result, bail};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs each target for `seconds`.
pub fn fuzz(root: &Path, seconds: u64) -> Result<()> {
    install_cargo_fuzz()?;
    let fuzz_dir = root.join("fuzz");
    let targets: Vec<String> = stdout_of(cargo_fuzz(&fuzz_dir).arg("list"))?
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!("no fuzz targets in {}", fuzz_dir.display());
    }
    eprintln!("xtask: cargo fuzz build ({})", targets.join(", "));
    run(cargo_fuzz(&fuzz_dir).arg("build"))?;
    let mut rows = Vec::new();
    for target in &targets {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let row = fuzz_one(root, &fuzz_dir, target, seconds)?;
        if row.failed {
            eprintln!("{}", row.why);
        }
        rows.push(row);
    }
    print_table(&rows);
    let failed: Vec<&Row> = rows.iter().filter(|r| r.failed).collect();
    if !failed.is_empty() {
        let mut lines = Vec::new();
        for r in &failed {
            lines.push(format!("  {} (log: {})", r.target, r.log.display()));
            if r.artifacts.is_empty() {
                lines.push("    no input written: see the log".to_string());
            }
            for input in &r.artifacts {
                lines.push(format!(
                    "    reproduce: cd fuzz && cargo +nightly fuzz run {} {input}",
                    r.target
                ));
            }
        }
        bail!("{} fuzz target(s) failed:\n{}", failed.len(), lines.join("\n"));
    }
    Ok(())
}

fn install_cargo_fuzz() -> Result<()> {
    if !crate::setup::succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        eprintln!("xtask: installing cargo-fuzz");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    Ok(())
}

/// `cargo +nightly fuzz` in the fuzz crate (libFuzzer and the sanitizers need nightly).
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    // The rustup proxy, not `$CARGO`: only the proxy understands `+nightly`.
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "fuzz"]).current_dir(fuzz_dir);
    cmd
}

/// What one target's run did.
struct Row {
    target: String,
    executions: Option<u64>,
    per_second: Option<u64>,
    cov: Option<u64>,
    ft: Option<u64>,
    /// libFuzzer's `corp:` at the end, `units/size`.
    corpus: Option<String>,
    /// Inputs libFuzzer wrote for a crash, a timeout or running out of memory.
    artifacts: Vec<String>,
    failed: bool,
    /// For a failed run: its status and the start of libFuzzer's report.
    why: String,
    log: PathBuf,
}

fn fuzz_one(root: &Path, fuzz_dir: &Path, target: &str, seconds: u64) -> Result<Row> {
    // A scratch copy of the seeds: what the run finds stays out of the committed corpus.
    let corpus = root.join("target/fuzz-corpus").join(target);
    if corpus.exists() {
        fs::remove_dir_all(&corpus).with_context(|| format!("clearing {}", corpus.display()))?;
    }
    fs::create_dir_all(&corpus)?;
    let seeds = fuzz_dir.join("corpus").join(target);
    if seeds.is_dir() {
        for entry in fs::read_dir(&seeds)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                fs::copy(entry.path(), corpus.join(entry.file_name()))?;
            }
        }
    }
    let logs = root.join("target/fuzz-logs");
    fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{target}.log"));
    let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    let status = cargo_fuzz(fuzz_dir)
        .args(["run", target])
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // A hang becomes a failure in seconds rather than libFuzzer's 20 minutes.
        .args(["-print_final_stats=1", "-timeout=10"])
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("starting cargo fuzz run {target}"))?;
    let text = String::from_utf8_lossy(&fs::read(&log)?).into_owned();

    let stat = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().strip_prefix(':')?.trim().parse().ok())
    };
    // The last status line, e.g. `#1402456 DONE cov: 238 ft: 429 corp: 107/11906b ...`.
    let status_line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains(" cov: "))
        .unwrap_or_default();
    let field = |name: &str| {
        let mut words = status_line.split_whitespace();
        words.find(|w| *w == name)?;
        words.next().map(str::to_string)
    };
    let artifacts: Vec<String> = text
        .lines()
        .filter_map(|l| Some(l.split_once("Test unit written to ")?.1.trim().to_string()))
        .collect();
    let failed = !status.success() || !artifacts.is_empty();
    let why = if failed {
        // From the panic or sanitizer report on, as libFuzzer printed it.
        let lines: Vec<&str> = text.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.contains("panicked at") || l.starts_with("==") || l.contains("ERROR: libFuzzer"))
            .unwrap_or(lines.len().saturating_sub(20));
        let end = lines.len().min(start + 20);
        format!("xtask: {target} failed ({status}):\n{}", lines[start..end].join("\n"))
    } else {
        String::new()
    };
    Ok(Row {
        target: target.to_string(),
        executions: stat("stat::number_of_executed_units"),
        per_second: stat("stat::average_exec_per_sec"),
        cov: field("cov:").and_then(|v| v.parse().ok()),
        ft: field("ft:").and_then(|v| v.parse().ok()),
        corpus: field("corp:"),
        artifacts,
        failed,
        why,
        log,
    })
}

fn print_table(rows: &[Row]) {
    let number = |n: Option<u64>| n.map_or("?".to_string(), thousands);
    println!(
        "{:<16} {:>12} {:>9} {:>6} {:>7} {:>14} {:>8}",
        "target", "executions", "exec/s", "cov", "ft", "corpus", "crashes"
    );
    for r in rows {
        println!(
            "{:<16} {:>12} {:>9} {:>6} {:>7} {:>14} {:>8}",
            r.target,
            number(r.executions),
            number(r.per_second),
            number(r.cov),
            number(r.ft),
            r.corpus.as_deref().unwrap_or("?"),
            if r.failed && r.artifacts.is_empty() {
                "failed".to_string()
            } else {
                r.artifacts.len().to_string()
            },
        );
    }
}

/// 1234567 as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
