//! Just enough of a BTF reader to find where a few fields sit in this kernel's structs
//! (`task_struct.pid` and `tgid`, a `sock`'s ports), so the programs can read them from a
//! pointer without CO-RE (aya's Rust programs have no field relocations).
use anyhow::{Context, Result, bail, ensure};
use profiler_common::{SockOffsets, TaskOffsets};

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
/// Kinds that only name or qualify another type: TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG.
const KINDS_WRAPPING: [u32; 5] = [8, 9, 10, 11, 18];

/// The running kernel's types.
pub struct KernelBtf {
    data: Vec<u8>,
    strings: usize,
    /// Where each type's header starts, by type id (id 0 is `void` and has none).
    types: Vec<usize>,
}

/// One type's header.
struct Type {
    name_off: u32,
    kind: u32,
    vlen: usize,
    kind_flag: bool,
    /// Size for structs and unions, the referred type for typedefs and qualifiers.
    size_or_type: u32,
    /// Where its members (or other trailing data) start.
    extra: usize,
}

impl KernelBtf {
    pub fn read() -> Result<KernelBtf> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).with_context(|| format!("reading {path} (kernel built without BTF?)"))?;
        KernelBtf::parse(data).with_context(|| format!("parsing {path}"))
    }

    fn parse(data: Vec<u8>) -> Result<KernelBtf> {
        ensure!(u16_at(&data, 0) == Some(MAGIC), "not little-endian BTF");
        let field = |at: usize| u32_at(&data, at).map(|v| v as usize).context("truncated BTF header");
        let (hdr_len, type_off, type_len, str_off) = (field(4)?, field(8)?, field(12)?, field(16)?);
        let start = hdr_len + type_off;
        let mut types = vec![0];
        let mut at = start;
        while at < start + type_len {
            types.push(at);
            let info = u32_at(&data, at + 4).context("truncated type")?;
            at += 12 + extra_len((info >> 24) & 0x1f, (info & 0xffff) as usize)?;
        }
        Ok(KernelBtf {
            data,
            strings: hdr_len + str_off,
            types,
        })
    }

    fn ty(&self, id: u32) -> Result<Type> {
        let at = *self.types.get(id as usize).filter(|_| id > 0).context("bad type id")?;
        let word = |k: usize| u32_at(&self.data, at + 4 * k).context("truncated type");
        let info = word(1)?;
        Ok(Type {
            name_off: word(0)?,
            kind: (info >> 24) & 0x1f,
            vlen: (info & 0xffff) as usize,
            kind_flag: info >> 31 == 1,
            size_or_type: word(2)?,
            extra: at + 12,
        })
    }

    fn name(&self, off: u32) -> &[u8] {
        let rest = self.data.get(self.strings + off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    }

    /// The id of `struct name` (its definition, not a forward declaration): one pass over the
    /// types, so callers look it up once for all its members.
    fn struct_id(&self, name: &str) -> Result<u32> {
        (1..self.types.len() as u32)
            .find(|&id| {
                self.ty(id)
                    .is_ok_and(|t| t.kind == KIND_STRUCT && t.vlen > 0 && self.name(t.name_off) == name.as_bytes())
            })
            .with_context(|| format!("no struct {name}"))
    }

    /// Byte offset of `path` (members separated by dots, e.g. `__sk_common.skc_num`) in the
    /// struct with id `id`. Members of anonymous structs and unions are found as if they were
    /// the outer struct's own, as C sees them.
    fn offset_in(&self, mut id: u32, path: &str) -> Result<u32> {
        let mut offset = 0;
        let mut members = path.split('.').peekable();
        while let Some(member) = members.next() {
            let (at, member_type) = self.member(id, member)?.with_context(|| format!("no member {path}"))?;
            offset += at;
            if members.peek().is_some() {
                id = self.resolve(member_type)?;
            }
        }
        Ok(offset)
    }

    /// Offset and type of member `wanted` of the struct or union `id`, looking into anonymous
    /// members.
    fn member(&self, id: u32, wanted: &str) -> Result<Option<(u32, u32)>> {
        let t = self.ty(id)?;
        ensure!(matches!(t.kind, KIND_STRUCT | KIND_UNION), "not a struct or union");
        for i in 0..t.vlen {
            let m = t.extra + i * 12;
            let word = |k: usize| u32_at(&self.data, m + 4 * k).context("truncated member");
            let (name_off, member_type, mut bits) = (word(0)?, word(1)?, word(2)?);
            if t.kind_flag {
                bits &= 0x00ff_ffff; // the rest is a bitfield's size
            }
            let at = bits / 8;
            if self.name(name_off) == wanted.as_bytes() {
                return Ok(Some((at, member_type)));
            }
            if name_off == 0
                && let Ok(inner) = self.resolve(member_type)
                && let Some((inner_at, ty)) = self.member(inner, wanted)?
            {
                return Ok(Some((at + inner_at, ty)));
            }
        }
        Ok(None)
    }

    /// The struct or union behind typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Result<u32> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            if KINDS_WRAPPING.contains(&t.kind) {
                id = t.size_or_type;
                continue;
            }
            ensure!(matches!(t.kind, KIND_STRUCT | KIND_UNION), "not a struct or union");
            return Ok(id);
        }
        bail!("type chain too long")
    }

    pub fn task_offsets(&self) -> Result<TaskOffsets> {
        let task = self.struct_id("task_struct")?;
        Ok(TaskOffsets {
            pid: self.offset_in(task, "pid")?,
            tgid: self.offset_in(task, "tgid")?,
        })
    }

    pub fn sock_offsets(&self) -> Result<SockOffsets> {
        let sock = self.struct_id("sock")?;
        Ok(SockOffsets {
            num: self.offset_in(sock, "__sk_common.skc_num")?,
            dport: self.offset_in(sock, "__sk_common.skc_dport")?,
        })
    }
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Bytes that follow a type's 12-byte header, by kind (linux/btf.h).
fn extra_len(kind: u32, vlen: usize) -> Result<usize> {
    Ok(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        other => bail!("unknown BTF kind {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::KernelBtf;

    #[test]
    fn finds_this_kernels_offsets() {
        let btf = KernelBtf::read().unwrap();
        let task = btf.task_offsets().unwrap();
        // tgid follows pid in every kernel since 2.6.
        assert_eq!(task.tgid, task.pid + 4, "{task:?}");
        assert!(task.pid > 0);
        // sock_common starts struct sock; its port pair follows the address pair and the hash:
        // skc_dport at 12 and skc_num at 14 on every 64-bit kernel since 3.x.
        let sock = btf.sock_offsets().unwrap();
        assert_eq!((sock.dport, sock.num), (12, 14), "{sock:?}");
        let sock = btf.struct_id("sock").unwrap();
        assert!(btf.offset_in(sock, "__sk_common.no_such_field").is_err());
        assert!(btf.struct_id("no_such_struct").is_err());
    }
}
