//! Just enough of a BTF reader to find where `pid` and `tgid` sit in this kernel's
//! `struct task_struct`, so the scheduler programs can read them from a task pointer without
//! CO-RE (aya's Rust programs have no field relocations).
use anyhow::{Context, Result, bail, ensure};
use profiler_common::TaskOffsets;

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;

/// Reads the offsets from the running kernel's BTF.
pub fn task_offsets() -> Result<TaskOffsets> {
    let path = "/sys/kernel/btf/vmlinux";
    let data = std::fs::read(path).with_context(|| format!("reading {path} (kernel built without BTF?)"))?;
    task_offsets_from(&data).with_context(|| format!("finding task_struct.pid/tgid in {path}"))
}

pub fn task_offsets_from(data: &[u8]) -> Result<TaskOffsets> {
    let u16_at = |at: usize| data.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    ensure!(u16_at(0) == Some(MAGIC), "not little-endian BTF");
    let field = |at: usize| u32_at(at).map(|v| v as usize).context("truncated BTF header");
    let (hdr_len, type_off, type_len, str_off) = (field(4)?, field(8)?, field(12)?, field(16)?);
    let types = hdr_len + type_off;
    let strings = hdr_len + str_off;
    let name = |off: u32| -> &[u8] {
        let start = strings + off as usize;
        let rest = data.get(start..).unwrap_or_default();
        &rest[..rest.iter().position(|&b| b == 0).unwrap_or(rest.len())]
    };

    let mut at = types;
    while at < types + type_len {
        let (name_off, info) = (
            u32_at(at).context("truncated type")?,
            u32_at(at + 4).context("truncated type")?,
        );
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kind_flag = info >> 31 == 1;
        at += 12;
        if kind == KIND_STRUCT && name(name_off) == b"task_struct" && vlen > 0 {
            let (mut pid, mut tgid) = (None, None);
            for i in 0..vlen {
                let m = at + i * 12;
                let member = name(u32_at(m).context("truncated member")?);
                let mut bits = u32_at(m + 8).context("truncated member")?;
                if kind_flag {
                    bits &= 0x00ff_ffff;
                }
                match member {
                    b"pid" => pid = Some(bits / 8),
                    b"tgid" => tgid = Some(bits / 8),
                    _ => {}
                }
            }
            let (Some(pid), Some(tgid)) = (pid, tgid) else {
                bail!("task_struct has no pid or tgid member")
            };
            return Ok(TaskOffsets { pid, tgid });
        }
        at += extra_len(kind, vlen)?;
    }
    bail!("no struct task_struct")
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
    #[test]
    fn finds_this_kernels_task_offsets() {
        let offsets = super::task_offsets().unwrap();
        // tgid follows pid in every kernel since 2.6.
        assert_eq!(offsets.tgid, offsets.pid + 4, "{offsets:?}");
        assert!(offsets.pid > 0);
    }
}
