//! The one profiling path: options -> attach -> (the caller waits or runs its load) -> finish into
//! a [`Report`]: the [`Profile`], and the saturation signals over the same window. The `profile`
//! and `bench --profile` commands, the node's bench_profile, the demo and the benchmarks all go
//! through [`Session`].
use crate::attach::{self, AttachError, Programs};
use crate::breakdown::{Breakdown, ProgramCost};
use crate::report::Report;
use crate::signals::Window;
use crate::stacks::Stacks;
use crate::symbols::{ProcessImage, Symbols};
use crate::unwind;
use crate::{Mode, Requested, Totals, Unwind};
use anyhow::Result;
use bench::load::LoadReport;
use bench::server::ServerChild;
use bench::server::selftime::{SelfTimes, StepTotals};
use profiler_common::{CONTEXT_USER, ClassTotals, SyscallClass};
use serde::Serialize;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// How to profile: a plain plan filled from flags or request fields before anything touches the
/// kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProfileOptions {
    pub mode: Requested,
    /// cpu-clock samples per second on each CPU, when the sampler runs (sampling mode, stacks).
    pub frequency_hz: u32,
    /// Take stacks in the exact modes too (sampling mode always takes them).
    pub stacks: bool,
    /// Report the eBPF programs' own run time (BPF run-time statistics).
    pub bpf_stats: bool,
    /// How sampled user stacks are walked: frame pointers, or call frame information.
    pub unwind: Unwind,
    /// Also profile the target processes' children (nginx's or a prefork server's workers).
    pub children: bool,
}

impl ProfileOptions {
    /// `profile`'s default frequency: perf's and BCC's 99 Hz, off step with timer ticks.
    pub const DEFAULT_FREQUENCY_HZ: u32 = 99;
    /// Highest frequency accepted (the kernel may allow less: `kernel.perf_event_max_sample_rate`).
    pub const MAX_FREQUENCY_HZ: u32 = 20_000;

    /// The processes to profile for `pids`: with their children when asked.
    pub fn targets(&self, pids: &[u32]) -> Vec<u32> {
        let mut targets = pids.to_vec();
        if self.children {
            targets.extend(pids.iter().flat_map(|&pid| crate::procfs::children(pid)));
        }
        targets.sort_unstable();
        targets.dedup();
        targets
    }
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            mode: Requested::Auto,
            frequency_hz: ProfileOptions::DEFAULT_FREQUENCY_HZ,
            stacks: false,
            bpf_stats: false,
            unwind: Unwind::Auto,
            children: false,
        }
    }
}

/// Everything one profiling window measured.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    #[serde(flatten)]
    pub breakdown: Breakdown,
    /// The sampled stacks, when taken: `top_functions` and `stack_errors` in JSON.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<Stacks>,
    /// Target processes that exited during the window: the profile covers what they did before.
    pub exited: Vec<u32>,
    /// The window was cut short (Ctrl-C): the figures cover the part that ran.
    pub partial: bool,
    /// The eBPF programs' own cost, when run-time statistics were asked for.
    #[serde(rename = "programs", skip_serializing_if = "Option::is_none")]
    pub program_costs: Option<Vec<ProgramCost>>,
}

/// A profile being taken, with the saturation signals over the same window. Dropping it
/// detaches everything.
pub struct Session<'a> {
    source: Source<'a>,
    pids: Vec<u32>,
    /// The targets' listening ports, for the signals.
    ports: Vec<u16>,
    fallback_reasons: Vec<String>,
    signals: Window,
    start: Instant,
}

enum Source<'a> {
    Kernel {
        programs: Box<Programs>,
        /// The targets' mappings, for naming their stacks even after they exit.
        images: Vec<ProcessImage>,
        run_stats: Option<OwnedFd>,
    },
    /// A bench-server that times its own steps (userspace mode).
    SelfTimed(&'a mut ServerChild),
}

impl Session<'static> {
    /// Attaches to `pids` (accounted together) in the first mode `options` allows that works.
    /// Userspace mode needs a server that times itself ([`Session::self_timed`]): asking for it
    /// here, or no eBPF mode attaching, is an error that carries each mode's reason.
    pub fn attach(pids: &[u32], options: &ProfileOptions) -> Result<Session<'static>, AttachError> {
        Session::attach_judged(pids, options, &|| {
            unwind::cfi_targets(pids, options.unwind, unwind::needs_cfi)
        })
    }

    /// [`Session::attach`] to a process that has not yet run `program` (a child waiting to exec
    /// it): its unwinding is judged by the program, not by what the process maps now.
    pub fn attach_before_exec(
        pid: u32,
        program: &Path,
        options: &ProfileOptions,
    ) -> Result<Session<'static>, AttachError> {
        Session::attach_judged(&[pid], options, &|| {
            unwind::cfi_targets(&[pid], options.unwind, |_| unwind::program_needs_cfi(program))
        })
    }

    fn attach_judged(
        pids: &[u32],
        options: &ProfileOptions,
        cfi: &dyn Fn() -> Vec<u32>,
    ) -> Result<Session<'static>, AttachError> {
        let ports = listening_ports(pids);
        let (mut programs, fallback_reasons) =
            attach::attach(pids, &ports, options.mode, options.frequency_hz, options.stacks, cfi)?;
        // A process that is gone already (a worker that exited since it was listed) keeps no
        // mappings: its frames will be [unknown], the rest of the profile stands.
        let images = match programs.sampler_hz {
            Some(_) => pids
                .iter()
                .map(|&pid| ProcessImage::read(pid).unwrap_or_else(|_| ProcessImage::gone(pid)))
                .collect(),
            None => Vec::new(),
        };
        let run_stats = options
            .bpf_stats
            .then(crate::totals::enable_run_stats)
            .transpose()
            .map_err(|e| AttachError::Refused(format!("{e:#}")))?;
        let signals = Window::open(Ok(pids.to_vec()), &ports, Ok(&mut programs.loaded));
        Ok(Session {
            source: Source::Kernel {
                programs: Box::new(programs),
                images,
                run_stats,
            },
            pids: pids.to_vec(),
            ports,
            fallback_reasons,
            signals,
            start: Instant::now(),
        })
    }
}

impl<'a> Session<'a> {
    /// Userspace mode: `server` (started with self-timing) times its own accept, read, process
    /// and write steps from now on. `fallback_reasons` says why no eBPF mode ran.
    pub fn self_timed(server: &'a mut ServerChild, fallback_reasons: Vec<String>) -> Result<Session<'a>> {
        server.reset_self_times()?;
        let pids = vec![server.pid()];
        let signals = Window::open(Ok(pids.clone()), &[server.addr().port()], Err(USERSPACE_SIGNALS.into()));
        Ok(Session {
            pids,
            ports: vec![server.addr().port()],
            source: Source::SelfTimed(server),
            fallback_reasons,
            signals,
            start: Instant::now(),
        })
    }

    /// The processes profiled.
    pub fn pids(&self) -> &[u32] {
        &self.pids
    }

    pub fn mode(&self) -> Mode {
        match &self.source {
            Source::Kernel { programs, .. } => programs.mode,
            Source::SelfTimed(_) => Mode::Userspace,
        }
    }

    /// Reads the targets' mappings again (libraries loaded since attach): long windows call this
    /// now and then so that a target that exits later still gets its frames named.
    pub fn refresh(&mut self) {
        if let Source::Kernel { images, .. } = &mut self.source {
            images.iter_mut().for_each(ProcessImage::refresh);
        }
    }

    /// Starts the signals' window over from now (when the load starts, after connecting); the
    /// profile's window is unchanged.
    pub fn restart_signals(&mut self) {
        let kernel = match &mut self.source {
            Source::Kernel { programs, .. } => Ok(&mut programs.loaded),
            Source::SelfTimed(_) => Err(USERSPACE_SIGNALS.to_string()),
        };
        self.signals = Window::open(Ok(self.pids.clone()), &self.ports, kernel);
    }

    /// The breakdown of what the kernel counted since `earlier` (a previous [`Session::totals`])
    /// over `window`: one interval of a long profile.
    pub fn breakdown_since(&self, earlier: &Totals, now: &Totals, window: Duration) -> Result<Breakdown> {
        let Source::Kernel { programs, .. } = &self.source else {
            anyhow::bail!("userspace mode has no kernel totals")
        };
        let delta = now.since(earlier);
        Ok(Breakdown::new(
            &delta,
            programs.mode,
            programs.sampler_hz,
            Vec::new(),
            window,
            programs.tracing.as_ref(),
        ))
    }

    /// What the kernel has counted so far, without ending the window.
    pub fn totals(&self) -> Result<Totals> {
        match &self.source {
            Source::Kernel { programs, .. } => programs.read_totals(),
            Source::SelfTimed(_) => anyhow::bail!("userspace mode has no kernel totals"),
        }
    }

    /// Ends the window: reads the totals, stacks and signals, names the stacks while the targets
    /// still run, and detaches. `load` is what the caller's load generator measured over the
    /// window, if it ran one; when it was interrupted, so is the profile (`partial`).
    pub fn finish(mut self, load: Option<LoadReport>) -> Result<Report> {
        let window = self.start.elapsed();
        let partial = load.as_ref().is_some_and(|l| l.interrupted);
        self.refresh();
        let exited = self
            .pids
            .iter()
            .copied()
            .filter(|&pid| !crate::procfs::is_alive(pid))
            .collect();
        let reasons = std::mem::take(&mut self.fallback_reasons);
        match self.source {
            Source::Kernel {
                mut programs,
                images,
                run_stats,
            } => {
                let signals = self.signals.close(Some(&programs.loaded));
                let totals = programs.read_totals()?;
                let frequency = programs.sampler_hz;
                let unwound = programs.unwinding.take().map(unwind::Reader::finish);
                let stacks = match programs.sampler_hz {
                    Some(_) => Some(crate::stacks::read(&programs, &images, &Symbols::default(), unwound)?),
                    None => None,
                };
                let profile = Profile {
                    breakdown: Breakdown::new(
                        &totals,
                        programs.mode,
                        frequency,
                        reasons,
                        window,
                        programs.tracing.as_ref(),
                    ),
                    stacks,
                    exited,
                    partial,
                    program_costs: run_stats.map(|_fd| programs.program_costs()),
                };
                Ok(Report::new(load, signals, Some(profile)))
            }
            Source::SelfTimed(server) => {
                let signals = self.signals.close(None);
                let times = server.self_times()?;
                let window = Duration::from_nanos(times.window_ns);
                let profile = Profile {
                    breakdown: Breakdown::new(&userspace_totals(&times), Mode::Userspace, None, reasons, window, None),
                    stacks: None,
                    exited,
                    partial,
                    program_costs: None,
                };
                Ok(Report::new(load, signals, Some(profile)))
            }
        }
    }
}

/// Why a userspace-mode session has no kernel signals.
const USERSPACE_SIGNALS: &str = "userspace mode loads no eBPF";

/// The ports `pids` listen on, for the TCP programs and the accept-queue poller (none when they
/// cannot be read: those signals are then reported missing).
fn listening_ports(pids: &[u32]) -> Vec<u16> {
    let mut ports: Vec<u16> = crate::signals::listen::listeners_of(pids)
        .map(|listeners| listeners.iter().map(|l| l.port).collect())
        .unwrap_or_default();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// The server's own wall-clock timings in the shape of kernel totals: accept, read and write
/// steps as their classes, processing as user space, and the rest of the process's CPU time
/// (getrusage) as other syscalls.
fn userspace_totals(t: &SelfTimes) -> Totals {
    let class = |s: &StepTotals| ClassTotals {
        calls: s.calls,
        errors: s.errors,
        total_ns: s.ns,
        oncpu_ns: s.ns,
        bytes: s.bytes,
        hist: s.hist,
        ..ClassTotals::ZERO
    };
    let mut totals = Totals::default();
    totals.contexts[SyscallClass::Accept as usize] = class(&t.accept);
    totals.contexts[SyscallClass::Read as usize] = class(&t.read);
    totals.contexts[SyscallClass::Write as usize] = class(&t.write);
    totals.contexts[CONTEXT_USER as usize].oncpu_ns = t.process.ns;
    let timed = t.accept.ns + t.read.ns + t.write.ns + t.process.ns;
    totals.contexts[SyscallClass::Other as usize].oncpu_ns = t.cpu_ns.saturating_sub(timed);
    totals.sched.voluntary = t.voluntary_switches;
    totals.sched.involuntary = t.involuntary_switches;
    totals
}
