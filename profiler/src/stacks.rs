//! The sampled stacks of the target, read from the kernel's maps at the end of the window and
//! named, as folded stacks (the part first, then the process, then frames outermost first, kernel
//! frames ending in `_[k]`, as perf's and inferno's are) and as each part's top functions.
use crate::attach::Programs;
use crate::breakdown::Part;
use crate::symbols::{Frame, ProcessImage, Symbols, UNKNOWN};
use crate::unwind::{CfiStacks, StackEnd};
use anyhow::{Context, Result};
use aya::maps::{PerCpuHashMap, StackTraceMap};
use profiler_common::{NO_STACK, StackErrors, StackKey, names};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};

/// How many functions per part the reports list.
pub const TOP_FUNCTIONS: usize = 5;
/// The deepest stack the kernel walks (PERF_MAX_STACK_DEPTH): a user stack this deep was cut.
const MAX_DEPTH: usize = 127;
/// Functions that only a whole user stack reaches: the start of the process or of a thread. The
/// outermost frames themselves are often nameless (glibc ships without its internal symbols), so
/// a stack counts as whole when it holds any of these.
const ROOTS: [&str; 7] = [
    "main",
    "_start",
    "__libc_start_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone3",
];

/// Kernel functions that run because something traces the task: the syscall slow path that a
/// syscall tracepoint switches on (seccomp, audit and ptrace take it too), its dispatch, and BPF
/// programs (ours, and any other tool's).
const TRACING_FRAMES: [&str; 5] = [
    "syscall_trace_enter",
    "syscall_exit_work",
    "__bpf_trace_run",
    "bpf_trace_run",
    "bpf_prog_",
];

/// Whether a kernel stack (innermost first) is running the tracing machinery.
fn is_tracing(frames: &[Frame]) -> bool {
    frames
        .iter()
        .any(|f| TRACING_FRAMES.iter().any(|t| f.function.starts_with(t)))
}

/// Whether a user stack (innermost first) was walked to the start of its thread: it holds a
/// thread's first function, or it ends in the C library's own unnamed code, where glibc starts
/// processes and threads (`__libc_start_call_main`, `start_thread` and `clone3` are not in its
/// `.dynsym`). A cut stack ends wherever its last frame pointer happened to point.
fn is_whole(frames: &[Frame]) -> bool {
    let ends_in_libc_start = frames
        .last()
        .is_some_and(|f| f.is_unknown() && f.module.starts_with("libc.so"));
    frames.len() < MAX_DEPTH
        && (ends_in_libc_start
            || frames.iter().any(|f| {
                // Rust threads start in std's `...::Thread::new::thread_start`.
                ROOTS.contains(&f.function.as_str()) || f.function.ends_with("::thread_start")
            }))
}

/// Ids of CFI-unwound user stacks, past the kernel's stack map's (which holds
/// [`profiler_common::MAX_STACKS`]).
const CFI_IDS: i32 = 1 << 30;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stacks {
    /// One line per distinct stack, with its samples, in folded order (written to files, not
    /// into JSON).
    #[serde(skip)]
    pub folded: Vec<(String, u64)>,
    /// Each part's functions by self samples, most first (JSON keeps the top ones).
    #[serde(rename = "top_functions", serialize_with = "top_only")]
    pub functions: BTreeMap<Part, Vec<FunctionShare>>,
    #[serde(rename = "stack_errors")]
    pub errors: StackErrorCounts,
    /// Samples, per part, that caught the target running the tracing machinery (the syscall
    /// slow path and BPF programs): mostly the exact modes' own cost, which they count as the
    /// server's time, mostly in process. Sampling mode hooks no syscall, so it has little.
    pub tracing_samples: BTreeMap<Part, u64>,
    /// The processes whose user stacks were unwound from call frame information (the others'
    /// were walked by frame pointers).
    pub unwound_cfi: Vec<u32>,
    /// What would name more of the stacks: once per process, not a frame per sample.
    pub hints: Vec<String>,
}

/// A function's self samples (it was the innermost frame) and their share of its part.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunctionShare {
    pub function: String,
    pub module: String,
    pub samples: u64,
    pub pct: f64,
}

/// Samples whose stacks are missing or partial.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StackErrorCounts {
    /// The stack map bucket held another stack: the sample has no stack of that kind.
    pub collisions: u64,
    /// The kernel could not walk the stack at all.
    pub failed: u64,
    /// The count map was full: the sample is in the totals but in no stack.
    pub lost: u64,
    /// Samples whose user stack, walked by frame pointers, stops before its thread's first
    /// function: code built without them, or deeper than 127 frames. They keep at least the
    /// sampled function.
    pub truncated: u64,
    /// Samples whose user stack, unwound from call frame information, still ended early, by why
    /// (`unwind::StackEnd`): the next frame was above the copied stack, the code had no CFI for
    /// its address, a return address was in no mapping, a rule could not be followed.
    pub copy_too_short: u64,
    pub no_cfi: u64,
    pub unknown_mapping: u64,
    pub unwind_error: u64,
    /// Samples of CFI targets that found the user-stack ring buffer full: their user stacks were
    /// walked by frame pointers instead.
    pub ring_full: u64,
}

impl StackErrorCounts {
    /// Samples with a user stack cut short, however it was walked.
    pub fn cut_short(&self) -> u64 {
        self.truncated + self.copy_too_short + self.no_cfi + self.unknown_mapping + self.unwind_error
    }

    fn count_end(&mut self, end: StackEnd, samples: u64) {
        match end {
            StackEnd::Whole => {}
            StackEnd::CopyTooShort => self.copy_too_short += samples,
            StackEnd::NoCfi => self.no_cfi += samples,
            StackEnd::UnknownMapping => self.unknown_mapping += samples,
            StackEnd::UnwindError => self.unwind_error += samples,
        }
    }
}

impl Stacks {
    /// Samples with a stack recorded, in every part.
    pub fn total_stacked_samples(&self) -> u64 {
        self.folded.iter().map(|(_, n)| n).sum()
    }

    /// Samples with a stack recorded, per part.
    pub fn stacked_samples(&self, part: Part) -> u64 {
        self.functions
            .get(&part)
            .map_or(0, |f| f.iter().map(|f| f.samples).sum())
    }
}

/// Reads and names the stacks counted since attach, with the user stacks `unwound` from CFI
/// while the window lasted. `images` are the targets' mappings.
pub(crate) fn read(
    programs: &Programs,
    images: &[ProcessImage],
    symbols: &Symbols,
    unwound: Option<CfiStacks>,
) -> Result<Stacks> {
    let counts: PerCpuHashMap<_, StackKey, u64> = PerCpuHashMap::try_from(programs.loaded.map(names::STACK_COUNTS)?)?;
    let mut by_key: HashMap<StackKey, u64> = HashMap::new();
    for entry in counts.iter() {
        let (key, per_cpu) = entry.context("reading STACK_COUNTS")?;
        *by_key.entry(key).or_default() += per_cpu.iter().sum::<u64>();
    }
    let errors: StackErrors = programs.loaded.sum_over_cpus(names::STACK_ERRORS)?;
    let mut report = StackErrorCounts {
        collisions: errors.collisions,
        failed: errors.failed,
        lost: errors.lost,
        ring_full: errors.ring_full,
        ..StackErrorCounts::default()
    };

    // CFI-unwound user stacks join the kernel-walked ones under ids of their own.
    let mut addrs: HashMap<i32, Vec<u64>> = HashMap::new();
    let mut ends: HashMap<i32, StackEnd> = HashMap::new();
    let mut unwound_cfi = Vec::new();
    if let Some(unwound) = unwound {
        unwound_cfi = unwound.pids;
        for (key, count) in unwound.counts {
            let key = StackKey {
                tgid: key.tgid,
                context: key.context,
                user_stack: CFI_IDS + key.user_stack as i32,
                kernel_stack: key.kernel_stack,
            };
            *by_key.entry(key).or_default() += count;
        }
        for (i, (frames, end)) in unwound.user_stacks.into_iter().enumerate() {
            addrs.insert(CFI_IDS + i as i32, frames);
            ends.insert(CFI_IDS + i as i32, end);
        }
    }
    let traces = StackTraceMap::try_from(programs.loaded.map(names::STACK_TRACES)?)?;
    for key in by_key.keys() {
        for id in [key.user_stack, key.kernel_stack] {
            if (0..CFI_IDS).contains(&id) && !addrs.contains_key(&id) {
                let trace = traces
                    .get(&(id as u32), 0)
                    .with_context(|| format!("reading stack {id}"))?;
                addrs.insert(id, trace.frames().iter().map(|f| f.ip).collect());
            }
        }
    }
    let named = NamedStacks::new(&by_key, &addrs, images, symbols);

    let mut folded: HashMap<String, u64> = HashMap::new();
    let mut leaves: BTreeMap<Part, HashMap<Frame, u64>> = BTreeMap::new();
    let mut tracing_samples: BTreeMap<Part, u64> = BTreeMap::new();
    let mut seen: HashMap<u32, Seen> = HashMap::new();
    for (key, &count) in &by_key {
        let part = Part::of_context(key.context);
        let process = images.iter().find(|i| i.pid == key.tgid).map_or("?", |i| &i.name);
        let mut line = vec![part.name().to_string(), clean(process)];
        let user = named.stack(key.tgid, key.user_stack);
        match user {
            Some(frames) => {
                match ends.get(&key.user_stack) {
                    Some(&end) => report.count_end(end, count),
                    None if !is_whole(frames) => report.truncated += count,
                    None => {}
                }
                seen.entry(key.tgid).or_default().add(frames, count);
                // Frames of JIT code without names, one after another, say no more than one.
                let mut outer_first: Vec<&Frame> = frames.iter().rev().collect();
                outer_first.dedup_by(|a, b| a.is_unknown_jit() && b.is_unknown_jit());
                line.extend(outer_first.iter().map(|f| clean(&f.function)));
            }
            None => line.push("[missing user stack]".into()),
        }
        let kernel = (key.kernel_stack != NO_STACK).then(|| named.stack(0, key.kernel_stack));
        match kernel {
            Some(Some(frames)) => {
                if is_tracing(frames) {
                    *tracing_samples.entry(part).or_default() += count;
                }
                line.extend(frames.iter().rev().map(|f| format!("{}_[k]", clean(&f.function))));
            }
            Some(None) => line.push("[missing kernel stack]_[k]".into()),
            None => {}
        }
        *folded.entry(line.join(";")).or_default() += count;
        let leaf = match (kernel, user) {
            (Some(Some(frames)), _) => frames.first(),
            // In user space the function a Python programmer wrote is the innermost Python
            // frame: the interpreter's own frames inside it are it running.
            (None, Some(frames)) => frames.iter().find(|f| f.is_python()).or(frames.first()),
            _ => None,
        }
        .cloned()
        .unwrap_or_else(|| Frame {
            function: "[missing stack]".into(),
            module: UNKNOWN.into(),
        });
        *leaves.entry(part).or_default().entry(leaf).or_default() += count;
    }
    let mut folded: Vec<(String, u64)> = folded.into_iter().collect();
    folded.sort();
    Ok(Stacks {
        folded,
        functions: leaves
            .into_iter()
            .map(|(part, leaves)| (part, ranked(leaves)))
            .collect(),
        errors: report,
        tracing_samples,
        unwound_cfi,
        hints: images
            .iter()
            .filter_map(|image| hint(image, seen.get(&image.pid)?))
            .collect(),
    })
}

/// What a process's user stacks held, for the hints.
#[derive(Default)]
struct Seen {
    samples: u64,
    /// Samples with JIT code the perf map does not name.
    unnamed_jit: u64,
    /// Samples with a Python function named.
    python: u64,
}

impl Seen {
    fn add(&mut self, frames: &[Frame], count: u64) {
        self.samples += count;
        if frames.iter().any(Frame::is_unknown_jit) {
            self.unnamed_jit += count;
        }
        if frames.iter().any(Frame::is_python) {
            self.python += count;
        }
    }
}

/// How to get names for what a process ran unnamed, said once.
fn hint(image: &ProcessImage, seen: &Seen) -> Option<String> {
    let who = format!("{} (pid {})", image.name, image.pid);
    let program = image.files().next().unwrap_or_default();
    if seen.unnamed_jit > 0 {
        let how = if program.starts_with("node") {
            "start node with --perf-basic-prof to name its JavaScript functions".to_string()
        } else if program.starts_with("java") {
            format!(
                "run `jcmd {} Compiler.perfmap` before the window ends, or start java with \
                 -XX:+UnlockDiagnosticVMOptions -XX:+DumpPerfMapAtExit (and -XX:+PreserveFramePointer for stacks \
                 through compiled Java code)",
                image.pid
            )
        } else {
            format!("its runtime would name that code in /tmp/perf-{}.map", image.pid)
        };
        let status = if image.has_perf_map() {
            "not named in its perf map"
        } else {
            "and it has no perf map"
        };
        return Some(format!(
            "{who}: {} of {} samples ran JIT code {status}: {how}",
            seen.unnamed_jit, seen.samples
        ));
    }
    let python = image.files().find_map(python_minor)?;
    if seen.python > 0 || seen.samples == 0 {
        return None;
    }
    Some(if python >= 12 {
        format!(
            "{who}: no Python function named: start CPython 3.{python} with -X perf (or PYTHONPERFSUPPORT=1) so \
             that its Python functions appear in the stacks"
        )
    } else {
        format!(
            "{who}: no Python function named: CPython 3.{python} has no perf trampolines; CPython 3.12 and later \
             name Python functions with -X perf"
        )
    })
}

/// The minor version of CPython 3 a file is (`python3.12`, `libpython3.12.so.1.0`).
fn python_minor(file: &str) -> Option<u32> {
    let rest = file.strip_prefix("lib").unwrap_or(file).strip_prefix("python3.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn top_only<S: serde::Serializer>(functions: &BTreeMap<Part, Vec<FunctionShare>>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(
        functions
            .iter()
            .map(|(part, f)| (part, &f[..f.len().min(TOP_FUNCTIONS)])),
    )
}

/// The functions by self samples, largest first, with their share of the part.
fn ranked(leaves: HashMap<Frame, u64>) -> Vec<FunctionShare> {
    let total: u64 = leaves.values().sum();
    let mut ranked: Vec<(Frame, u64)> = leaves.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.function.cmp(&b.0.function)));
    ranked
        .into_iter()
        .map(|(frame, samples)| FunctionShare {
            function: frame.function,
            module: frame.module,
            samples,
            pct: (samples as f64 * 1000.0 / total as f64).round() / 10.0,
        })
        .collect()
}

/// Every stack's frames, named in one batch per process (and one for the kernel).
struct NamedStacks {
    /// (tgid, stack id) -> frames, innermost first; tgid 0 for kernel stacks.
    stacks: HashMap<(u32, i32), Vec<Frame>>,
}

impl NamedStacks {
    fn new(
        keys: &HashMap<StackKey, u64>,
        addrs: &HashMap<i32, Vec<u64>>,
        images: &[ProcessImage],
        symbols: &Symbols,
    ) -> NamedStacks {
        // Which stacks to name in which address space.
        let mut wanted: BTreeMap<u32, HashSet<i32>> = BTreeMap::new();
        for key in keys.keys() {
            if key.user_stack >= 0 {
                wanted.entry(key.tgid).or_default().insert(key.user_stack);
            }
            if key.kernel_stack >= 0 {
                wanted.entry(0).or_default().insert(key.kernel_stack);
            }
        }
        let mut stacks = HashMap::new();
        for (tgid, ids) in wanted {
            let ids: Vec<i32> = ids.into_iter().collect();
            // Every frame but the innermost is a return address: name the call before it.
            let lookups: Vec<u64> = ids
                .iter()
                .flat_map(|id| {
                    addrs[id]
                        .iter()
                        .enumerate()
                        .map(|(depth, &ip)| if depth == 0 { ip } else { ip.saturating_sub(1) })
                })
                .collect();
            let frames = match (tgid, images.iter().find(|i| i.pid == tgid)) {
                (0, _) => symbols.kernel(&lookups),
                (_, Some(image)) => symbols.user(image, &lookups),
                (_, None) => vec![Frame::unknown(UNKNOWN); lookups.len()],
            };
            let mut frames = frames.into_iter();
            for id in ids {
                let n = addrs[&id].len();
                stacks.insert((tgid, id), frames.by_ref().take(n).collect());
            }
        }
        NamedStacks { stacks }
    }

    /// A stack's frames (innermost first), or None when the sample has no such stack.
    fn stack(&self, tgid: u32, id: i32) -> Option<&Vec<Frame>> {
        self.stacks.get(&(tgid, id))
    }
}

/// A frame or process name as one folded field: `;` separates frames and a line's count follows
/// its last space, so neither may be mistaken.
fn clean(name: &str) -> String {
    name.replace(';', ":")
}
