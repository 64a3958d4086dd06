//! What unwinding reads of an ELF file: its call frame information (`.eh_frame` with its
//! `.eh_frame_hdr` index, or `.debug_frame`), where its segments load, and whether its code keeps
//! frame pointers.
use anyhow::{Context, Result};
use framehop::ExplicitModuleSectionInfo;
use gimli::{BaseAddresses, DebugFrame, EhFrame, EhFrameHdr, LittleEndian, UnwindSection};
use object::read::elf::ElfFile64;
use object::{Endianness, Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// A section's bytes and where it sits in the file's own addresses (SVMA).
#[derive(Clone, Debug)]
struct Section {
    svma: Range<u64>,
    data: Arc<[u8]>,
}

/// An ELF file's unwind tables, copied out of it (the file is not kept open or mapped).
#[derive(Clone, Debug, Default)]
pub(crate) struct UnwindTables {
    eh_frame: Option<Section>,
    eh_frame_hdr: Option<Section>,
    debug_frame: Option<Section>,
    text: Option<Range<u64>>,
    got: Option<Range<u64>>,
    /// Loadable segments: (file offset, SVMA) pairs, for the load bias of a mapping.
    segments: Vec<(u64, u64)>,
}

impl UnwindTables {
    /// Reads the tables of the file at `path` (a path of /proc/PID/map_files serves too).
    pub fn read(path: &Path) -> Result<UnwindTables> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: a read-only private mapping; a file truncated under us could fault, which is
        // the price every profiler pays to read the binaries it names (perf, blazesym).
        let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
        UnwindTables::parse(&map).with_context(|| format!("reading {}", path.display()))
    }

    /// The tables of an ELF image in memory (the vDSO).
    pub fn parse(data: &[u8]) -> Result<UnwindTables> {
        let elf = ElfFile64::<Endianness>::parse(data)?;
        let section = |name: &str| {
            let s = elf.section_by_name(name)?;
            let data = s.data().ok()?;
            Some(Section {
                svma: s.address()..s.address() + s.size(),
                data: Arc::from(data),
            })
        };
        let range = |name: &str| elf.section_by_name(name).map(|s| s.address()..s.address() + s.size());
        Ok(UnwindTables {
            eh_frame: section(".eh_frame"),
            eh_frame_hdr: section(".eh_frame_hdr"),
            // Only read when there is no .eh_frame: framehop prefers the latter.
            debug_frame: match elf.section_by_name(".eh_frame") {
                Some(_) => None,
                None => section(".debug_frame"),
            },
            text: range(".text"),
            got: range(".got"),
            segments: elf.segments().map(|s| (s.file_range().0, s.address())).collect(),
        })
    }

    /// Whether there is any call frame information at all.
    pub fn is_empty(&self) -> bool {
        self.eh_frame.is_none() && self.debug_frame.is_none()
    }

    /// The load bias of a mapping at `start` of the file from `offset`: AVMA - SVMA for every
    /// address in it. Segments load at the same offset within a page as they sit in the file.
    pub fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        let &(seg_offset, seg_svma) = self
            .segments
            .iter()
            .filter(|&&(seg_offset, _)| seg_offset & !0xfff <= offset)
            .max_by_key(|&&(seg_offset, _)| seg_offset)?;
        let svma = (seg_svma - seg_offset).wrapping_add(offset);
        Some(start.wrapping_sub(svma))
    }

    /// The tables as framehop takes them; SVMAs as they are (base 0).
    pub fn section_info(&self) -> ExplicitModuleSectionInfo<Arc<[u8]>> {
        ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: self.text.clone(),
            got_svma: self.got.clone(),
            eh_frame_svma: self.eh_frame.as_ref().map(|s| s.svma.clone()),
            eh_frame: self.eh_frame.as_ref().map(|s| s.data.clone()),
            eh_frame_hdr_svma: self.eh_frame_hdr.as_ref().map(|s| s.svma.clone()),
            eh_frame_hdr: self.eh_frame_hdr.as_ref().map(|s| s.data.clone()),
            debug_frame: self.debug_frame.as_ref().map(|s| s.data.clone()),
            ..Default::default()
        }
    }

    /// Whether some frame description covers `svma`. framehop falls back to frame pointers where
    /// none does, which in code built without them reads a return address from wherever rbp
    /// points: a stack that ends there ended for want of CFI.
    pub fn covers(&self, svma: u64) -> bool {
        let start = |s: &Option<Section>| s.as_ref().map_or(0, |s| s.svma.start);
        let bases = BaseAddresses::default()
            .set_eh_frame(start(&self.eh_frame))
            .set_eh_frame_hdr(start(&self.eh_frame_hdr))
            .set_text(self.text.as_ref().map_or(0, |r| r.start))
            .set_got(self.got.as_ref().map_or(0, |r| r.start));
        if let Some(eh) = &self.eh_frame {
            let eh_frame = EhFrame::new(&eh.data, LittleEndian);
            let indexed = self.eh_frame_hdr.as_ref().and_then(|hdr| {
                let hdr = EhFrameHdr::new(&hdr.data, LittleEndian).parse(&bases, 8).ok()?;
                let table = hdr.table()?;
                Some(
                    table
                        .fde_for_address(&eh_frame, &bases, svma, EhFrame::cie_from_offset)
                        .is_ok(),
                )
            });
            return indexed.unwrap_or_else(|| eh_frame.fde_for_address(&bases, svma, EhFrame::cie_from_offset).is_ok());
        }
        self.debug_frame.as_ref().is_some_and(|df| {
            DebugFrame::new(&df.data, LittleEndian)
                .fde_for_address(&bases, svma, DebugFrame::cie_from_offset)
                .is_ok()
        })
    }
}

/// How many of a file's functions [`keeps_frame_pointers`] looks at, spread over its symbols.
const PROLOGUES_SAMPLED: usize = 400;

/// Whether the code of the ELF file at `path` was built with frame pointers, judged by its
/// functions' first instructions: with them, nearly every function opens with `push %rbp; mov
/// %rsp,%rbp` (after an `endbr64`); without, few do (those that use rbp otherwise save it, but
/// do not point it at their frame). None when the file has no function symbols to judge by.
pub fn keeps_frame_pointers(path: &Path) -> Result<Option<bool>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: as in UnwindTables::read.
    let map = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("mapping {}", path.display()))?;
    let elf = ElfFile64::<Endianness>::parse(&*map).with_context(|| format!("reading {}", path.display()))?;
    Ok(frame_pointer_share(&elf).map(|share| share >= 0.5))
}

/// The share of sampled functions that set up a frame pointer.
fn frame_pointer_share(elf: &ElfFile64<Endianness>) -> Option<f64> {
    // The static symbol table when there is one (stripped binaries keep only the dynamic one).
    let mut functions: Vec<(u64, object::SectionIndex)> = elf
        .symbols()
        .chain(elf.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.size() >= 16 && s.is_definition())
        .filter_map(|s| Some((s.address(), s.section_index()?)))
        .collect();
    functions.sort_unstable_by_key(|&(address, _)| address);
    functions.dedup_by_key(|&mut (address, _)| address);
    if functions.is_empty() {
        return None;
    }
    let step = functions.len().div_ceil(PROLOGUES_SAMPLED);
    let (mut judged, mut with_fp) = (0, 0);
    for &(address, index) in functions.iter().step_by(step) {
        let Some(code) = elf
            .section_by_index(index)
            .ok()
            .and_then(|s| s.data_range(address, 8).ok().flatten())
        else {
            continue;
        };
        judged += 1;
        let code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa][..]).unwrap_or(code);
        if code.starts_with(&[0x55, 0x48, 0x89, 0xe5]) {
            with_fp += 1;
        }
    }
    (judged > 0).then(|| with_fp as f64 / judged as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc() -> std::path::PathBuf {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps.lines().find(|l| l.contains("/libc.so")).expect("libc mapped");
        line[line.find('/').unwrap()..].into()
    }

    #[test]
    fn our_code_keeps_frame_pointers_and_debians_libc_does_not() {
        // .cargo/config.toml builds everything here with frame pointers, this test too.
        let me = std::env::current_exe().unwrap();
        assert_eq!(keeps_frame_pointers(&me).unwrap(), Some(true));
        assert_eq!(keeps_frame_pointers(&libc()).unwrap(), Some(false));
    }

    #[test]
    fn tables_cover_the_code_and_place_it() {
        let tables = UnwindTables::read(&libc()).unwrap();
        assert!(tables.eh_frame.is_some() && tables.eh_frame_hdr.is_some());
        // libc's own getpid, as mapped in this process: its SVMA from the bias of its mapping.
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let exec = maps
            .lines()
            .find(|l| l.contains("/libc.so") && l.split_whitespace().nth(1).unwrap().contains('x'))
            .unwrap();
        let mut fields = exec.split_whitespace();
        let start = u64::from_str_radix(fields.next().unwrap().split('-').next().unwrap(), 16).unwrap();
        let offset = u64::from_str_radix(fields.nth(1).unwrap(), 16).unwrap();
        let bias = tables.bias(start, offset).unwrap();
        let getpid = libc::getpid as *const () as u64;
        assert!(
            tables.covers(getpid - bias),
            "no FDE for getpid at {:#x}",
            getpid - bias
        );
        assert!(!tables.covers(0), "an FDE at address 0");
    }
}
