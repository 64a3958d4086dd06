//! User stacks of code built without frame pointers, unwound in user space from call frame
//! information, as `perf record --call-graph dwarf` and samply do.
//!
//! Why here and not in the kernel: the sampling program copies the thread's user registers and
//! the top 12 to 16 KiB of its stack (profiler-common's `UserStackSample`) into a BPF ring buffer,
//! and [`Reader`] unwinds each sample with framehop while the window goes, from the `.eh_frame`
//! (or `.debug_frame`) of the files the process maps. Unwinding in the kernel from CFI tables
//! loaded into maps (Parca's and the OpenTelemetry profiler's way) deduplicates stacks there, but
//! needs its own table compiler and a verifier-bounded unwinder for every file; this way costs a
//! copy per sample, which only the processes that need it pay: frame pointers stay the fast path
//! (walked and counted in the kernel) wherever the code keeps them ([`Unwind::Auto`]).
//!
//! JIT code has no CFI: a frame in anonymous executable memory is unwound by its frame pointer
//! (V8 keeps one, HotSpot with -XX:+PreserveFramePointer), except CPython 3.12+'s perf
//! trampolines, which keep none: each is `sub $8,%rsp; call *%rcx`, so the caller's return
//! address sits 8 bytes above the stack pointer.
//! A stack that still ends early is counted by why ([`StackEnd`]), never passed off as whole.
pub(crate) mod elf;

use crate::perf_map::PerfMap;
use crate::symbols::{Mapping, parse_maps};
use anyhow::Result;
use elf::UnwindTables;
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{FrameAddress, Module, Unwinder};
use profiler_common::{USER_STACK_BYTES, UserStackSample};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How user stacks are walked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unwind {
    /// Frame pointers where the process's own code keeps them, CFI otherwise ([`needs_cfi`]).
    #[default]
    Auto,
    /// Frame pointers, walked by the kernel (stacks of code built without them end early).
    Fp,
    /// Call frame information, for every target.
    Dwarf,
}

impl FromStr for Unwind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Unwind::Auto),
            "fp" => Ok(Unwind::Fp),
            "dwarf" | "cfi" => Ok(Unwind::Dwarf),
            _ => Err(format!("unknown unwinding {s:?}: expected auto, fp or dwarf")),
        }
    }
}

/// The processes among `pids` whose user stacks `unwind` has unwound from CFI; with `Auto`, those
/// `needs` says need it ([`needs_cfi`], or [`program_needs_cfi`] before an exec).
pub fn cfi_targets(pids: &[u32], unwind: Unwind, needs: impl Fn(u32) -> bool) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|&pid| match unwind {
            Unwind::Fp => false,
            Unwind::Dwarf => true,
            Unwind::Auto => needs(pid),
        })
        .collect()
}

/// Libraries every program maps whose code is not the program's own: the C and C++ runtimes.
/// Debian builds them without frame pointers, but their functions are mostly leaves or thin
/// wrappers that a frame-pointer walk steps over, losing at most the caller of the sampled one.
const RUNTIME_LIBRARIES: [&str; 9] = [
    "libc.so",
    "libm.so",
    "ld-linux",
    "libgcc_s.so",
    "libstdc++.so",
    "libpthread.so",
    "libdl.so",
    "librt.so",
    "libresolv.so",
];

/// Whether `pid` needs CFI to have its stacks walked whole: some file of its own code (its
/// executable or a library beyond the C and C++ runtimes) does not keep frame pointers. Files are
/// judged once per run of tcpprof; a process whose maps cannot be read gets CFI.
pub fn needs_cfi(pid: u32) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return true;
    };
    let files = parse_maps(&maps)
        .into_iter()
        .filter(|m| m.path.starts_with('/') && is_own_code(m.file_name()))
        .map(|m| {
            let through_proc = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
            (m.path, through_proc)
        });
    any_without_frame_pointers(files)
}

/// [`needs_cfi`] for a program not started yet: its file, and the libraries the dynamic loader
/// would map for it (`ld.so --list`, what ldd prints; it runs none of the program's code).
pub fn program_needs_cfi(program: &Path) -> bool {
    let mut files = vec![(program.to_string_lossy().into_owned(), program.to_path_buf())];
    let listed = std::process::Command::new(DYNAMIC_LOADER)
        .arg("--list")
        .arg(program)
        .stderr(std::process::Stdio::null())
        .output();
    if let Ok(out) = listed {
        // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f...)"
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some((_, rest)) = line.split_once(" => ") else {
                continue;
            };
            let Some(path) = rest.rsplit_once(" (").map(|(path, _)| path) else {
                continue;
            };
            let name = path.rsplit('/').next().unwrap_or(path);
            if path.starts_with('/') && is_own_code(name) {
                files.push((path.to_string(), PathBuf::from(path)));
            }
        }
    }
    any_without_frame_pointers(files.into_iter())
}

/// The x86_64 dynamic loader, which lists a program's libraries with --list.
const DYNAMIC_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

/// Whether a file (by name) holds the program's own code rather than the C and C++ runtimes'.
fn is_own_code(file_name: &str) -> bool {
    !RUNTIME_LIBRARIES.iter().any(|lib| file_name.starts_with(lib))
}

/// Whether any of these files (its path, and where to open it) lacks frame pointers.
fn any_without_frame_pointers(files: impl Iterator<Item = (String, PathBuf)>) -> bool {
    let mut files: Vec<(String, PathBuf)> = files.collect();
    files.sort();
    files.dedup_by(|a, b| a.0 == b.0);
    files.iter().any(|(path, open)| !keeps_frame_pointers(path, open))
}

/// [`elf::keeps_frame_pointers`], remembered by path; a file with no function symbols to judge
/// by, or that cannot be read, counts as without.
fn keeps_frame_pointers(path: &str, through_proc: &Path) -> bool {
    static JUDGED: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let judged = JUDGED.get_or_init(Mutex::default);
    if let Some(&fp) = judged.lock().unwrap_or_else(PoisonError::into_inner).get(path) {
        return fp;
    }
    let fp = elf::keeps_frame_pointers(through_proc)
        .or_else(|_| elf::keeps_frame_pointers(Path::new(path)))
        .ok()
        .flatten()
        .unwrap_or(false);
    judged
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(path.to_string(), fp);
    fp
}

/// How a CFI-unwound user stack ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StackEnd {
    /// At the thread's first frame: CFI marks it the outermost, or its return address is 0.
    Whole,
    /// The next frame is above the stack the sample copied (or deeper than [`MAX_FRAMES`]).
    CopyTooShort,
    /// In a file with no frame description for the address: no rule to find its caller.
    NoCfi,
    /// The return address found is in no executable mapping of the process: the frame below
    /// (JIT code without a frame pointer, most likely) was unwound wrongly, and it is dropped.
    UnknownMapping,
    /// The rule for a frame could not be followed (it read outside the copied stack, or did not
    /// move the stack on).
    UnwindError,
}

/// Most frames unwound per stack (each takes at least 16 bytes of the copied stack).
pub const MAX_FRAMES: usize = 512;

/// One distinct (process, part, kernel stack, CFI-unwound user stack).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CfiKey {
    pub tgid: u32,
    pub context: u32,
    pub kernel_stack: i32,
    /// Index into [`CfiStacks::user_stacks`].
    pub user_stack: u32,
}

/// What the reader gathered over the window.
#[derive(Debug, Default)]
pub(crate) struct CfiStacks {
    pub counts: HashMap<CfiKey, u64>,
    /// Distinct user stacks (addresses, the sampled one first) and how each ended.
    pub user_stacks: Vec<(Vec<u64>, StackEnd)>,
    /// The processes whose stacks were unwound from CFI.
    pub pids: Vec<u32>,
}

/// Unwinds the samples of the user-stack ring buffer on a thread of its own while the window
/// lasts; [`Reader::finish`] empties the ring once more and returns what was counted.
pub(crate) struct Reader {
    stop: Arc<AtomicBool>,
    /// Taken by [`Reader::finish`]; a reader dropped without it stops all the same.
    thread: Option<std::thread::JoinHandle<CfiStacks>>,
}

/// How often the reader empties the ring (the programs do not wake it).
const POLL: Duration = Duration::from_millis(10);

impl Reader {
    pub fn start(mut ring: aya::maps::RingBuf<aya::maps::MapData>, pids: Vec<u32>) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tcpprof-unwind".into())
            .spawn(move || {
                let mut unwinding = Unwinding::default();
                loop {
                    // Read the flag first: what is in the ring after it was set is still read.
                    let last = stopped.load(Ordering::Acquire);
                    while let Some(item) = ring.next() {
                        unwinding.add(&item);
                    }
                    if last {
                        break;
                    }
                    std::thread::sleep(POLL);
                }
                unwinding.stacks.pids = pids;
                unwinding.stacks
            })
            .expect("starting the unwinding thread");
        Reader {
            stop,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> CfiStacks {
        self.stop();
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Default)]
struct Unwinding {
    processes: HashMap<u32, ProcessUnwinder>,
    /// Unwind tables by file, shared by the processes that map it (nginx's master and workers).
    tables: TableCache,
    index: HashMap<(u32, Vec<u64>), u32>,
    stacks: CfiStacks,
}

impl Unwinding {
    fn add(&mut self, record: &[u8]) {
        if record.len() < size_of::<UserStackSample>() {
            return;
        }
        // SAFETY: the programs write whole UserStackSamples; read_unaligned copies each header
        // field whatever the record's alignment.
        let u64_at = |offset: usize| unsafe { std::ptr::read_unaligned(record.as_ptr().add(offset) as *const u64) };
        let u32_at = |offset: usize| unsafe { std::ptr::read_unaligned(record.as_ptr().add(offset) as *const u32) };
        use std::mem::offset_of;
        let tgid = u32_at(offset_of!(UserStackSample, tgid));
        let context = u32_at(offset_of!(UserStackSample, context));
        let kernel_stack = u32_at(offset_of!(UserStackSample, kernel_stack)) as i32;
        let len = u32_at(offset_of!(UserStackSample, stack_len)) as usize;
        let regs = Regs {
            ip: u64_at(offset_of!(UserStackSample, ip)),
            sp: u64_at(offset_of!(UserStackSample, sp)),
            bp: u64_at(offset_of!(UserStackSample, bp)),
            stack_base: u64_at(offset_of!(UserStackSample, stack_base)),
        };
        let stack_start = offset_of!(UserStackSample, stack);
        let stack = &record[stack_start..stack_start + len.min(USER_STACK_BYTES)];
        let process = self.processes.entry(tgid).or_insert_with(|| ProcessUnwinder::new(tgid));
        let mut frames = Vec::with_capacity(32);
        let end = process.unwind(&regs, stack, &mut frames, &mut self.tables);
        let next = self.stacks.user_stacks.len() as u32;
        let user_stack = *self.index.entry((tgid, frames.clone())).or_insert(next);
        if user_stack == next {
            self.stacks.user_stacks.push((frames, end));
        }
        let key = CfiKey {
            tgid,
            context,
            kernel_stack,
            user_stack,
        };
        *self.stacks.counts.entry(key).or_default() += 1;
    }
}

/// The registers a sample starts from, and where its stack copy begins.
struct Regs {
    ip: u64,
    sp: u64,
    bp: u64,
    stack_base: u64,
}

#[derive(Default)]
struct TableCache(HashMap<String, Option<Arc<UnwindTables>>>);

impl TableCache {
    /// The tables of the file mapped at `m` in `pid`, read once per path.
    fn get(&mut self, pid: u32, m: &Mapping) -> Option<Arc<UnwindTables>> {
        self.0
            .entry(m.path.clone())
            .or_insert_with(|| {
                let tables = if m.path == "[vdso]" {
                    vdso_tables()
                } else {
                    let through_proc = format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end);
                    UnwindTables::read(Path::new(&through_proc))
                        .or_else(|_| UnwindTables::read(Path::new(m.path.trim_end_matches(" (deleted)"))))
                        .ok()
                };
                tables.filter(|t| !t.is_empty()).map(Arc::new)
            })
            .clone()
    }
}

/// The vDSO's tables, read from our own: the kernel maps one image into every process.
fn vdso_tables() -> Option<UnwindTables> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let vdso = parse_maps(&maps).into_iter().find(|m| m.path == "[vdso]")?;
    // SAFETY: our own vDSO, mapped readable for the life of the process.
    let image = unsafe { std::slice::from_raw_parts(vdso.start as *const u8, (vdso.end - vdso.start) as usize) };
    UnwindTables::parse(image).ok()
}

/// How a frame in JIT code finds its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JitFrame {
    /// By its frame pointer (framehop's rule where there is no CFI).
    FramePointer,
    /// A CPython perf trampoline: the return address 8 bytes above sp, 16 bytes popped.
    CpythonTrampoline,
}

/// One process's unwinder: its executable mappings as modules, loaded as samples reach them.
struct ProcessUnwinder {
    pid: u32,
    unwinder: UnwinderX86_64<Arc<[u8]>>,
    cache: CacheX86_64,
    /// Executable mappings, sorted by start.
    mappings: Vec<Mapped>,
    read_maps_at: Option<Instant>,
    unmapped: std::collections::HashSet<u64>,
    perf_map: Option<PerfMap>,
    /// By the start of a perf-map entry: how that JIT code is unwound.
    jit: HashMap<u64, JitFrame>,
    /// By lookup address: whether a file's CFI covers it (None: not a file's code).
    covered: HashMap<u64, bool>,
}

/// An executable mapping, with its file's tables and load bias when it has any.
struct Mapped {
    mapping: Mapping,
    tables: Option<(Arc<UnwindTables>, u64)>,
}

/// The least time between two readings of a process's maps for an address none covered.
const REREAD_MAPS: Duration = Duration::from_millis(2);
/// Addresses remembered as outside every mapping (return addresses read wrongly), so that they
/// do not send the unwinder to the maps again.
const MAX_UNMAPPED: usize = 4096;

impl ProcessUnwinder {
    fn new(pid: u32) -> ProcessUnwinder {
        ProcessUnwinder {
            pid,
            unwinder: UnwinderX86_64::new(),
            cache: CacheX86_64::new(),
            mappings: Vec::new(),
            read_maps_at: None,
            unmapped: std::collections::HashSet::new(),
            perf_map: None,
            jit: HashMap::new(),
            covered: HashMap::new(),
        }
    }

    /// The mapping holding `addr`, reading the maps again when none does (a library loaded or
    /// code compiled since), unless they were read a moment ago or showed nothing there since.
    fn mapping(&mut self, addr: u64, tables: &mut TableCache) -> Option<usize> {
        if let Some(i) = self.find(addr) {
            return Some(i);
        }
        if self.read_maps_at.is_some_and(|at| at.elapsed() < REREAD_MAPS) || self.unmapped.contains(&addr) {
            return None;
        }
        self.read_maps(tables);
        let found = self.find(addr);
        if found.is_none() && self.unmapped.len() < MAX_UNMAPPED {
            self.unmapped.insert(addr);
        }
        found
    }

    fn find(&self, addr: u64) -> Option<usize> {
        let i = self
            .mappings
            .partition_point(|m| m.mapping.start <= addr)
            .checked_sub(1)?;
        (addr < self.mappings[i].mapping.end).then_some(i)
    }

    fn read_maps(&mut self, tables: &mut TableCache) {
        self.read_maps_at = Some(Instant::now());
        let Ok(text) = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)) else {
            return;
        };
        for m in parse_maps(&text) {
            if self.mappings.iter().any(|known| known.mapping == m) {
                continue;
            }
            let placed = if m.path.starts_with('/') || m.path == "[vdso]" {
                tables
                    .get(self.pid, &m)
                    .and_then(|t| Some((t.clone(), t.bias(m.start, m.offset)?)))
            } else {
                None
            };
            if let Some((t, bias)) = &placed {
                let module = Module::new(m.path.clone(), m.start..m.end, *bias, t.section_info());
                self.unwinder.add_module(module);
            }
            // A range reused by a new mapping: the newer one stands.
            let unwinder = &mut self.unwinder;
            self.mappings.retain(|known| {
                let apart = known.mapping.end <= m.start || known.mapping.start >= m.end;
                if !apart && known.tables.is_some() {
                    unwinder.remove_module(known.mapping.start);
                }
                apart
            });
            let at = self.mappings.partition_point(|known| known.mapping.start < m.start);
            self.mappings.insert(
                at,
                Mapped {
                    mapping: m,
                    tables: placed,
                },
            );
        }
    }

    /// Unwinds one sample into `frames` (the sampled address first, then return addresses).
    fn unwind(&mut self, regs: &Regs, stack: &[u8], frames: &mut Vec<u64>, tables: &mut TableCache) -> StackEnd {
        let stack_end = regs.stack_base + stack.len() as u64;
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            let offset = addr.checked_sub(regs.stack_base).ok_or(())? as usize;
            let bytes = stack.get(offset..offset.checked_add(8).ok_or(())?).ok_or(())?;
            Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
        };
        let mut unwind_regs = UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp);
        let mut address = FrameAddress::from_instruction_pointer(regs.ip);
        frames.push(regs.ip);
        loop {
            if frames.len() >= MAX_FRAMES {
                return StackEnd::CopyTooShort;
            }
            let lookup = address.address_for_lookup();
            let Some(i) = self.mapping(lookup, tables) else {
                // Only a return address can be outside every mapping: it was read wrongly.
                frames.pop();
                return StackEnd::UnknownMapping;
            };
            let step = match self.frame_kind(i, lookup) {
                Frame::File { covered: false } => return StackEnd::NoCfi,
                Frame::Jit(JitFrame::CpythonTrampoline) => {
                    let sp = unwind_regs.sp();
                    match read_stack(sp + 8) {
                        Ok(ra) => {
                            unwind_regs.set_sp(sp + 16);
                            Ok(Some(ra))
                        }
                        Err(()) => Err(framehop::Error::CouldNotReadStack(sp + 8)),
                    }
                }
                Frame::File { covered: true } | Frame::Jit(JitFrame::FramePointer) => {
                    self.unwinder
                        .unwind_frame(address, &mut unwind_regs, &mut self.cache, &mut read_stack)
                }
            };
            match step {
                Ok(None) | Ok(Some(0)) => return StackEnd::Whole,
                Ok(Some(ra)) => {
                    frames.push(ra);
                    address = FrameAddress::from_return_address(ra).expect("not 0");
                }
                Err(framehop::Error::CouldNotReadStack(at)) if at >= stack_end => return StackEnd::CopyTooShort,
                Err(_) => return StackEnd::UnwindError,
            }
        }
    }

    /// What kind of code mapping `i` holds at `lookup`.
    fn frame_kind(&mut self, i: usize, lookup: u64) -> Frame {
        let Mapped { mapping, tables } = &self.mappings[i];
        if let Some((t, bias)) = tables {
            let covered = *self
                .covered
                .entry(lookup)
                .or_insert_with(|| t.covers(lookup.wrapping_sub(*bias)));
            return Frame::File { covered };
        }
        if mapping.path.starts_with('/') || mapping.path == "[vdso]" {
            // A file whose tables could not be read, or that has none.
            return Frame::File { covered: false };
        }
        Frame::Jit(self.jit_frame(lookup))
    }

    /// How the JIT code at `addr` is unwound, judged once per piece of code named in the perf
    /// map by its first instructions.
    fn jit_frame(&mut self, addr: u64) -> JitFrame {
        let pid = self.pid;
        let map = self.perf_map.get_or_insert_with(|| PerfMap::of(pid));
        if map.start_of(addr).is_none() {
            map.refresh();
        }
        let Some(start) = map.start_of(addr) else {
            return JitFrame::FramePointer;
        };
        *self.jit.entry(start).or_insert_with(|| {
            let mut code = [0u8; 10];
            let read = std::fs::File::open(format!("/proc/{pid}/mem"))
                .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut code, start));
            let code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa][..]).unwrap_or(&code);
            // sub $0x8,%rsp; call *%rcx
            if read.is_ok() && code.starts_with(&[0x48, 0x83, 0xec, 0x08, 0xff, 0xd1]) {
                JitFrame::CpythonTrampoline
            } else {
                JitFrame::FramePointer
            }
        })
    }
}

enum Frame {
    /// Code of a file, with or without a frame description for the address.
    File {
        covered: bool,
    },
    Jit(JitFrame),
}

/// Unwinds this thread's own stack from here, as the sampling program would have copied it:
/// for tests of the unwinder without a kernel in the way.
#[cfg(test)]
fn unwind_here(stack_bytes: usize) -> (Vec<u64>, StackEnd) {
    let (ip, sp, bp): (u64, u64, u64);
    // SAFETY: reads three registers; lea of the next instruction for ip.
    unsafe {
        std::arch::asm!("lea {ip}, [rip]", "mov {sp}, rsp", "mov {bp}, rbp", ip = out(reg) ip, sp = out(reg) sp, bp = out(reg) bp);
    }
    let base = sp & !0xfff;
    // The stack above sp is ours as far as the thread's stack goes; copy the pages that can be
    // read as the kernel's copy would (process_vm_readv honours page protections: past the
    // stack's top may lie another thread's guard page, which /proc/self/mem would read but a
    // plain load faults on).
    let mut stack = Vec::new();
    for page in 0..stack_bytes / 4096 {
        let mut copy = [0u8; 4096];
        let local = libc::iovec {
            iov_base: copy.as_mut_ptr().cast(),
            iov_len: copy.len(),
        };
        let remote = libc::iovec {
            iov_base: (base + page as u64 * 4096) as *mut libc::c_void,
            iov_len: copy.len(),
        };
        // SAFETY: copies one page of this process into a live buffer of that size; the kernel
        // checks the source.
        let copied = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if copied != copy.len() as isize {
            break;
        }
        stack.extend_from_slice(&copy);
    }
    let regs = Regs {
        ip,
        sp,
        bp,
        stack_base: base,
    };
    let mut process = ProcessUnwinder::new(std::process::id());
    let mut frames = Vec::new();
    let end = process.unwind(&regs, &stack, &mut frames, &mut TableCache::default());
    (frames, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::{ProcessImage, Symbols};

    #[inline(never)]
    fn deep(n: u32, stack_bytes: usize) -> (Vec<u64>, StackEnd) {
        if n == 0 {
            return unwind_here(stack_bytes);
        }
        let r = deep(n - 1, stack_bytes);
        std::hint::black_box(r)
    }

    fn names(frames: &[u64]) -> Vec<String> {
        let image = ProcessImage::read(std::process::id()).unwrap();
        let lookups: Vec<u64> = frames
            .iter()
            .enumerate()
            .map(|(i, &a)| if i == 0 { a } else { a - 1 })
            .collect();
        Symbols::default()
            .user(&image, &lookups)
            .into_iter()
            .map(|f| f.function)
            .collect()
    }

    #[test]
    fn this_threads_stack_unwinds_to_its_start() {
        // A test runs on a thread of the harness: whole means down to the thread's start, in
        // libc (start_thread, clone3), whose CFI marks the end.
        let (frames, end) = deep(5, 256 * 1024);
        let names = names(&frames);
        assert_eq!(end, StackEnd::Whole, "{names:#?}");
        assert!(names.iter().filter(|n| n.contains("deep")).count() >= 6, "{names:#?}");
        assert!(
            names
                .iter()
                .any(|n| n.contains("this_threads_stack_unwinds_to_its_start")),
            "{names:#?}"
        );
    }

    #[test]
    fn a_copy_too_short_says_so() {
        let (frames, end) = deep(5, 4096);
        assert_eq!(end, StackEnd::CopyTooShort, "{:#?}", names(&frames));
    }

    #[test]
    fn unwinding_options_parse() {
        assert_eq!("auto".parse(), Ok(Unwind::Auto));
        assert_eq!("dwarf".parse(), Ok(Unwind::Dwarf));
        assert_eq!("fp".parse(), Ok(Unwind::Fp));
        assert!("lbr".parse::<Unwind>().unwrap_err().contains("auto, fp or dwarf"));
    }
}
