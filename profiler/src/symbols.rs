//! Names for sampled addresses (blazesym): kernel frames from /proc/kallsyms, user frames from the
//! symbol tables (.symtab, else .dynsym) of the files a process had mapped.
//!
//! A process's mappings are read from /proc while it lives ([`ProcessImage`]) and its addresses
//! named from the files afterwards, by file offset: a target that exits before the end of the
//! window still gets names for what it did. While it lives, each file is opened through
//! /proc/PID/map_files, which reaches it in the target's mount namespace (a container) and after
//! it was replaced on disk; once it has exited, by its path. Code in anonymous executable memory
//! (JIT compilers, CPython's perf trampolines) is named from the process's perf map.
use crate::perf_map::PerfMap;
use blazesym::symbolize::source::{Elf, Kernel, Process, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};
use blazesym::{MaybeDefault, Pid};
use std::collections::HashMap;

/// One named frame.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    pub function: String,
    /// The file the code is in (its name only), or `[kernel]`, `[vdso]`, `[unknown]`.
    pub module: String,
}

/// The name of what could not be named: a function, or a module.
pub const UNKNOWN: &str = "[unknown]";

impl Frame {
    /// A frame in `module` whose function has no name.
    pub fn unknown(module: &str) -> Frame {
        Frame {
            function: UNKNOWN.into(),
            module: module.into(),
        }
    }

    /// JIT code the process's perf map does not name (or it has none).
    pub fn unknown_jit() -> Frame {
        Frame {
            function: JIT.into(),
            module: JIT.into(),
        }
    }

    pub fn is_unknown(&self) -> bool {
        self.function == UNKNOWN
    }

    pub fn is_unknown_jit(&self) -> bool {
        self.function == JIT
    }

    /// A Python function, named by CPython's perf trampoline.
    pub fn is_python(&self) -> bool {
        self.module == PYTHON
    }
}

pub const KERNEL_MODULE: &str = "[kernel]";
/// JIT-compiled code: its module, and its name when the perf map has none.
pub const JIT: &str = "[jit]";
/// CPython functions, named by its perf trampolines (`py::function:file`).
pub const PYTHON: &str = "[python]";

/// A process's name and executable mappings, as /proc showed them.
#[derive(Clone, Debug)]
pub struct ProcessImage {
    pub pid: u32,
    pub name: String,
    /// The file it runs (/proc/PID/exe), when that could be read.
    pub exe: Option<String>,
    /// Newest reading first, so a later mapping of a reused range wins.
    mappings: Vec<Mapping>,
    perf_map: PerfMap,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// The mapped file, `[vdso]`, or empty for anonymous memory.
    pub path: String,
}

impl Mapping {
    /// The file's name without its directory.
    pub fn file_name(&self) -> &str {
        let path = self.path.trim_end_matches(" (deleted)");
        path.rsplit('/').next().unwrap_or(path)
    }
}

impl ProcessImage {
    /// Reads /proc/PID/comm, exe and maps, and the perf map.
    pub fn read(pid: u32) -> std::io::Result<ProcessImage> {
        let mut image = ProcessImage::gone(pid);
        image.read_names()?;
        image.mappings = parse_maps(&std::fs::read_to_string(format!("/proc/{pid}/maps"))?);
        image.perf_map = PerfMap::of(pid);
        Ok(image)
    }

    fn read_names(&mut self) -> std::io::Result<()> {
        self.name = std::fs::read_to_string(format!("/proc/{}/comm", self.pid))?
            .trim_end()
            .to_string();
        self.exe = std::fs::read_link(format!("/proc/{}/exe", self.pid))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        Ok(())
    }

    /// A process whose /proc could not be read: nothing of it can be named.
    pub fn gone(pid: u32) -> ProcessImage {
        ProcessImage {
            pid,
            name: format!("[{pid}]"),
            exe: None,
            mappings: Vec::new(),
            perf_map: PerfMap::default(),
        }
    }

    /// Adds what the process has mapped since (libraries loaded later; after an exec, the new
    /// program, under its new name) and what its perf map gained, keeping the older mappings for
    /// addresses sampled before they went away. A process that is gone keeps its last reading.
    pub fn refresh(&mut self) {
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)) else {
            return;
        };
        let _ = self.read_names();
        let mut newer = parse_maps(&maps);
        newer.retain(|m| !self.mappings.contains(m));
        newer.append(&mut self.mappings);
        self.mappings = newer;
        self.perf_map.refresh();
    }

    fn find(&self, addr: u64) -> Option<&Mapping> {
        self.mappings.iter().find(|m| (m.start..m.end).contains(&addr))
    }

    /// Whether it has a perf map with anything in it.
    pub fn has_perf_map(&self) -> bool {
        !self.perf_map.is_empty()
    }

    /// The file names of what it maps executable, its program first.
    pub(crate) fn files(&self) -> impl Iterator<Item = &str> {
        self.exe
            .as_deref()
            .map(|e| e.rsplit('/').next().unwrap_or(e))
            .into_iter()
            .chain(
                self.mappings
                    .iter()
                    .filter(|m| m.path.starts_with('/'))
                    .map(Mapping::file_name),
            )
    }
}

/// The executable lines of a /proc/PID/maps text:
/// `start-end perms offset dev inode [path]`.
pub(crate) fn parse_maps(text: &str) -> Vec<Mapping> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms, offset) = (fields.next()?, fields.next()?, fields.next()?);
            if !perms.contains('x') {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let path = fields.nth(2).map_or(String::new(), |first| {
                // The path is the rest of the line (it may hold spaces).
                line[line.find(first).unwrap_or(0)..].to_string()
            });
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                offset: u64::from_str_radix(offset, 16).ok()?,
                path,
            })
        })
        .collect()
}

/// Names addresses, kernel and user, with one blazesym symbolizer (which caches parsed files).
pub struct Symbols {
    symbolizer: Symbolizer,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            symbolizer: Symbolizer::new(),
        }
    }
}

impl Symbols {
    /// Kernel addresses, from /proc/kallsyms.
    pub fn kernel(&self, addrs: &[u64]) -> Vec<Frame> {
        let source = Source::Kernel(Kernel {
            vmlinux: MaybeDefault::None,
            debug_syms: false,
            ..Kernel::default()
        });
        match self.symbolizer.symbolize(&source, Input::AbsAddr(addrs)) {
            Ok(symbols) => symbols.iter().map(|s| frame(s, KERNEL_MODULE)).collect(),
            Err(_) => addrs.iter().map(|_| Frame::unknown(KERNEL_MODULE)).collect(),
        }
    }

    /// Addresses in `image`'s process, each named from the file mapped there.
    pub fn user(&self, image: &ProcessImage, addrs: &[u64]) -> Vec<Frame> {
        let mut frames = vec![Frame::unknown(UNKNOWN); addrs.len()];
        // Batched per file: (index into addrs, file offset).
        let mut by_file: HashMap<&Mapping, Vec<(usize, u64)>> = HashMap::new();
        // (index into addrs, offset into the vDSO)
        let mut vdso = Vec::new();
        for (i, &addr) in addrs.iter().enumerate() {
            match image.find(addr) {
                Some(m) if m.path.starts_with('/') => {
                    by_file.entry(m).or_default().push((i, addr - m.start + m.offset));
                }
                Some(m) if m.path == VDSO => vdso.push((i, addr - m.start)),
                // [vsyscall] and the like: no file to read, the mapping's name is all there is.
                Some(m) if !m.path.is_empty() => {
                    frames[i] = Frame {
                        function: m.path.clone(),
                        module: m.path.clone(),
                    }
                }
                // Anonymous executable memory: code made at run time.
                Some(_) => frames[i] = jit_frame(image.perf_map.find(addr)),
                None => {}
            }
        }
        self.name_vdso(&vdso, &mut frames);
        for (mapping, wanted) in by_file {
            let path = mapping.path.trim_end_matches(" (deleted)");
            let module = mapping.file_name();
            let offsets: Vec<u64> = wanted.iter().map(|&(_, offset)| offset).collect();
            let through_proc = format!("/proc/{}/map_files/{:x}-{:x}", image.pid, mapping.start, mapping.end);
            let file = if std::path::Path::new(&through_proc).exists() {
                through_proc
            } else {
                path.to_string()
            };
            let source = Source::Elf(Elf {
                debug_syms: false,
                ..Elf::new(file)
            });
            let Ok(symbols) = self.symbolizer.symbolize(&source, Input::FileOffset(&offsets)) else {
                wanted.iter().for_each(|&(i, _)| frames[i] = Frame::unknown(module));
                continue;
            };
            for (&(i, _), symbol) in wanted.iter().zip(&symbols) {
                frames[i] = frame(symbol, module);
            }
        }
        frames
    }
}

const VDSO: &str = "[vdso]";

impl Symbols {
    /// The vDSO is one image the kernel maps into every process: a target's vDSO address is
    /// named by the same offset into ours, which blazesym reads from our own memory.
    fn name_vdso(&self, wanted: &[(usize, u64)], frames: &mut [Frame]) {
        if wanted.is_empty() {
            return;
        }
        let ours = ProcessImage::read(std::process::id())
            .ok()
            .and_then(|me| me.mappings.iter().find(|m| m.path == VDSO).map(|m| m.start));
        let Some(base) = ours else {
            wanted.iter().for_each(|&(i, _)| frames[i] = Frame::unknown(VDSO));
            return;
        };
        let addrs: Vec<u64> = wanted.iter().map(|&(_, offset)| base + offset).collect();
        let source = Source::Process(Process {
            debug_syms: false,
            perf_map: false,
            map_files: false,
            vdso: true,
            ..Process::new(Pid::Slf)
        });
        let symbols = self.symbolizer.symbolize(&source, Input::AbsAddr(&addrs));
        for (n, &(i, _)) in wanted.iter().enumerate() {
            frames[i] = match &symbols {
                Ok(symbols) => frame(&symbols[n], VDSO),
                Err(_) => Frame::unknown(VDSO),
            };
        }
    }
}

/// A frame of JIT code, named from the perf map when it has the address.
fn jit_frame(name: Option<&str>) -> Frame {
    match name {
        Some(name) => Frame {
            function: name.to_string(),
            module: if name.starts_with("py::") { PYTHON } else { JIT }.into(),
        },
        None => Frame::unknown_jit(),
    }
}

fn frame(symbol: &Symbolized, module: &str) -> Frame {
    match symbol {
        Symbolized::Sym(sym) => Frame {
            function: sym.name.to_string(),
            module: module.to_string(),
        },
        Symbolized::Unknown(_) => Frame::unknown(module),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keep_executable_lines_with_their_paths() {
        let text = "\
55d0c8a00000-55d0c8a21000 r--p 00000000 fd:01 1234   /usr/bin/my server
55d0c8a21000-55d0c8b00000 r-xp 00021000 fd:01 1234   /usr/bin/my server
7ffd1c3fe000-7ffd1c400000 r-xp 00000000 00:00 0      [vdso]
7f0000000000-7f0000001000 rwxp 00000000 00:00 0
";
        let maps = parse_maps(text);
        assert_eq!(maps.len(), 3, "{maps:?}");
        assert_eq!(maps[0].path, "/usr/bin/my server");
        assert_eq!((maps[0].start, maps[0].offset), (0x55d0c8a21000, 0x21000));
        assert_eq!(maps[1].path, "[vdso]");
        assert_eq!(maps[2].path, "");
    }

    #[test]
    fn names_this_process_and_the_kernel() {
        let image = ProcessImage::read(std::process::id()).unwrap();
        let names = Symbols::default();
        let here = maps_keep_executable_lines_with_their_paths as *const () as u64;
        let frames = names.user(&image, &[here, 1]);
        assert!(
            frames[0]
                .function
                .contains("maps_keep_executable_lines_with_their_paths"),
            "{frames:?}"
        );
        assert_eq!(frames[1], Frame::unknown(UNKNOWN));
        // The vDSO, found at its offset: clock_gettime lives there on x86_64.
        let vdso = image.mappings.iter().find(|m| m.path == VDSO).unwrap();
        let clock = names.user(&image, &[libc::clock_gettime as *const () as u64]);
        let in_vdso: Vec<Frame> = (vdso.start..vdso.end)
            .step_by(16)
            .map(|a| names.user(&image, &[a]).remove(0))
            .filter(|f| f.function.contains("clock_gettime"))
            .collect();
        assert!(!in_vdso.is_empty(), "no clock_gettime in the vDSO; libc's is {clock:?}");
        assert!(in_vdso.iter().all(|f| f.module == VDSO));
        // A kernel function that every kernel has, by its kallsyms address.
        let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
        let addr = kallsyms
            .lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let (addr, _, name) = (f.next()?, f.next()?, f.next()?);
                (name == "do_syscall_64").then(|| u64::from_str_radix(addr, 16).ok())?
            })
            .unwrap();
        // Without root kallsyms shows zeros: this needs root, like the rest of the tests.
        assert_ne!(addr, 0, "reading kernel addresses needs root");
        let frames = names.kernel(&[addr + 4]);
        assert_eq!(frames[0].function, "do_syscall_64", "{frames:?}");
        assert_eq!(frames[0].module, KERNEL_MODULE);
    }
}
