//! The Geneve TLV map (OVS's tunnel metadata table, `ovs-ofctl
//! add-tlv-map`): which Geneve option, by class and type, each
//! `tun_metadataN` field holds, and where in a flow's `tun_md` its value
//! sits.
//!
//! Like OVS's, the map is one per switch: a mapping, once made, keeps its
//! place until it is deleted (OpenFlow's NXTTMC_DELETE/CLEAR, refused
//! while a rule uses the field), so rules parsed against an older map
//! stay right. Parsing and printing `tun_metadataN` need the map; they read
//! [`current`], which is the map a thread set with [`with_map`] (a trace,
//! a test) or else the process's ([`set_global`], the daemon's).

use std::cell::RefCell;
use std::fmt::Write;
use std::sync::{Arc, RwLock};

use crate::flow::{TUN_MD_BYTES, TUN_METADATA_NUM};

/// Longest option value upcalld maps (a field's value travels as a
/// `u128`); OVS allows 124 bytes.
pub const TLV_MAX_LEN: usize = 16;

/// One mapping: option (class, type) of `len` bytes held at `offset` of
/// `Flow::tun_md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlvMapping {
    pub class: u16,
    pub opt_type: u8,
    pub len: u8,
    pub offset: u8,
}

/// The switch's map, indexed by `N` of `tun_metadataN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlvMap {
    entries: [Option<TlvMapping>; TUN_METADATA_NUM],
}

impl Default for TlvMap {
    fn default() -> Self {
        TlvMap {
            entries: [None; TUN_METADATA_NUM],
        }
    }
}

/// Why a change to the map was refused: OVS's `NXTTMFC_*` errors, which
/// the OpenFlow channel sends back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlvError {
    /// `NXTTMFC_BAD_OPT_LEN`: not a multiple of 4 from 4 to 16 bytes.
    BadOptLen(u8),
    /// `NXTTMFC_BAD_FIELD_IDX`: there is no `tun_metadataN` for it.
    BadFieldIdx(usize),
    /// `NXTTMFC_TABLE_FULL`: no room left in `tun_md` for the option.
    TableFull { len: u8, allocated: usize },
    /// `NXTTMFC_ALREADY_MAPPED`: the field holds another option.
    AlreadyMapped(usize),
    /// `NXTTMFC_DUP_ENTRY`: the option is mapped to another field.
    DupEntry {
        class: u16,
        opt_type: u8,
        index: usize,
    },
    /// `NXTTMFC_INVALID_TLV_DEL`: rules use the field being unmapped.
    InUse(usize),
}

impl std::fmt::Display for TlvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlvError::BadOptLen(len) => write!(
                f,
                "len={len}: upcalld maps options whose length is a multiple of 4 from 4 to {TLV_MAX_LEN}"
            ),
            TlvError::BadFieldIdx(i) => {
                write!(f, "tun_metadata{i}: fields go from tun_metadata0 to tun_metadata{}", TUN_METADATA_NUM - 1)
            }
            TlvError::TableFull { len, allocated } => write!(
                f,
                "no room for {len} more bytes of options ({allocated} of {TUN_MD_BYTES} in use)"
            ),
            TlvError::AlreadyMapped(i) => write!(f, "tun_metadata{i} is already mapped"),
            TlvError::DupEntry {
                class,
                opt_type,
                index,
            } => write!(
                f,
                "option class={class:#x},type={opt_type:#x} is already mapped to tun_metadata{index}"
            ),
            TlvError::InUse(i) => write!(f, "tun_metadata{i} is used by rules: delete them first"),
        }
    }
}

impl std::error::Error for TlvError {}

impl From<TlvError> for String {
    fn from(e: TlvError) -> String {
        e.to_string()
    }
}

/// One `{class=C,type=T,len=L}->tun_metadataN` of `add-tlv-map`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlvRequest {
    pub class: u16,
    pub opt_type: u8,
    pub len: u8,
    pub index: usize,
}

fn parse_int(s: &str, what: &str) -> Result<u64, String> {
    let s = s.trim();
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        s.parse()
    };
    r.map_err(|_| format!("{what}: `{s}` is not a number"))
}

/// Parses `ovs-ofctl add-tlv-map`'s argument: mappings separated by
/// commas, each `{class=C,type=T,len=L}->tun_metadataN`.
pub fn parse_tlv_requests(text: &str) -> Result<Vec<TlvRequest>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let body = rest
            .strip_prefix('{')
            .ok_or_else(|| format!("`{rest}`: a mapping starts with `{{class=…,type=…,len=…}}`"))?;
        let close = body
            .find('}')
            .ok_or_else(|| format!("`{rest}`: missing `}}`"))?;
        let (opt, after) = (&body[..close], &body[close + 1..]);
        let (mut class, mut opt_type, mut len) = (None, None, None);
        for kv in opt.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("`{kv}`: expected key=value"))?;
            let v = parse_int(v, k.trim())?;
            match k.trim() {
                "class" => class = Some(u16::try_from(v).map_err(|_| "class: above 0xffff")?),
                "type" => opt_type = Some(u8::try_from(v).map_err(|_| "type: above 0xff")?),
                "len" => len = Some(v),
                other => return Err(format!("`{other}`: unknown key (class, type, len)")),
            }
        }
        let (class, opt_type, len) = match (class, opt_type, len) {
            (Some(c), Some(t), Some(l)) => (c, t, l),
            _ => return Err(format!("`{{{opt}}}`: class, type and len are all needed")),
        };
        if len == 0 || len % 4 != 0 || len > 124 {
            return Err(format!(
                "len={len}: a Geneve option's length is a multiple of 4 from 4 to 124"
            ));
        }
        if len as usize > TLV_MAX_LEN {
            return Err(format!(
                "len={len}: upcalld maps options of at most {TLV_MAX_LEN} bytes"
            ));
        }
        let after = after.trim_start();
        let after = after
            .strip_prefix("->")
            .ok_or_else(|| format!("`{after}`: expected `->tun_metadataN`"))?
            .trim_start();
        let field_end = after.find(',').unwrap_or(after.len());
        let field = after[..field_end].trim();
        let index = field
            .strip_prefix("tun_metadata")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n < TUN_METADATA_NUM)
            .ok_or_else(|| format!("`{field}`: expected tun_metadata0 to tun_metadata63"))?;
        out.push(TlvRequest {
            class,
            opt_type,
            len: len as u8,
            index,
        });
        rest = after[field_end..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

impl TlvMap {
    /// Builds a map from `add-tlv-map` text.
    pub fn from_text(text: &str) -> Result<TlvMap, String> {
        let mut m = TlvMap::default();
        m.add(&parse_tlv_requests(text)?)?;
        Ok(m)
    }

    /// The mapping of `tun_metadata{index}`.
    pub fn get(&self, index: usize) -> Option<TlvMapping> {
        self.entries.get(index).copied().flatten()
    }

    /// The field holding option (class, type), with its mapping.
    pub fn by_option(&self, class: u16, opt_type: u8) -> Option<(usize, TlvMapping)> {
        self.entries.iter().enumerate().find_map(|(i, e)| {
            e.filter(|e| e.class == class && e.opt_type == opt_type)
                .map(|e| (i, e))
        })
    }

    /// Every mapping, by index.
    pub fn iter(&self) -> impl Iterator<Item = (usize, TlvMapping)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.map(|e| (i, e)))
    }

    /// Bytes of `tun_md` in use.
    pub fn allocated(&self) -> usize {
        self.iter().map(|(_, e)| e.len as usize).sum()
    }

    /// Adds mappings, all or none (OVS's `NXTTMC_ADD`): a field already
    /// mapped or an option mapped twice is refused, as is running out of
    /// option space.
    pub fn add(&mut self, reqs: &[TlvRequest]) -> Result<(), TlvError> {
        let mut next = self.clone();
        for r in reqs {
            if r.index >= TUN_METADATA_NUM {
                return Err(TlvError::BadFieldIdx(r.index));
            }
            if r.len == 0 || r.len % 4 != 0 || usize::from(r.len) > TLV_MAX_LEN {
                return Err(TlvError::BadOptLen(r.len));
            }
            if next.entries[r.index].is_some() {
                return Err(TlvError::AlreadyMapped(r.index));
            }
            if let Some((i, _)) = next.by_option(r.class, r.opt_type) {
                return Err(TlvError::DupEntry {
                    class: r.class,
                    opt_type: r.opt_type,
                    index: i,
                });
            }
            let offset = next
                .free_offset(r.len as usize)
                .ok_or(TlvError::TableFull {
                    len: r.len,
                    allocated: next.allocated(),
                })?;
            next.entries[r.index] = Some(TlvMapping {
                class: r.class,
                opt_type: r.opt_type,
                len: r.len,
                offset: offset as u8,
            });
        }
        *self = next;
        Ok(())
    }

    /// Removes the mappings of these fields (OVS's `NXTTMC_DELETE`; a
    /// field not mapped is left alone, as OVS does). Their option space
    /// is free again. The caller makes sure no rule uses them.
    pub fn delete(&mut self, indexes: &[usize]) -> Result<(), TlvError> {
        if let Some(&i) = indexes.iter().find(|&&i| i >= TUN_METADATA_NUM) {
            return Err(TlvError::BadFieldIdx(i));
        }
        for &i in indexes {
            self.entries[i] = None;
        }
        Ok(())
    }

    /// The first free run of `len` bytes (multiples of 4) in `tun_md`.
    fn free_offset(&self, len: usize) -> Option<usize> {
        let mut used = [false; TUN_MD_BYTES / 4];
        for (_, e) in self.iter() {
            let start = e.offset as usize / 4;
            used[start..start + e.len as usize / 4].fill(true);
        }
        let words = len / 4;
        (0..=used.len().checked_sub(words)?)
            .find(|&s| used[s..s + words].iter().all(|u| !u))
            .map(|s| s * 4)
    }

    /// What `ovs-ofctl dump-tlv-map` prints (OVS's `NXT_TLV_TABLE_REPLY`).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            " max option space={TUN_MD_BYTES} max fields={TUN_METADATA_NUM}"
        );
        let _ = writeln!(s, " allocated option space={}", self.allocated());
        s.push('\n');
        s.push_str(" mapping table:\n");
        s.push_str("  class  type  length  match field\n");
        s.push_str(" ------  ----  ------  --------------\n");
        for (i, e) in self.iter() {
            let ty = if e.opt_type == 0 {
                "0".to_string()
            } else {
                format!("{:#x}", e.opt_type)
            };
            let class = if e.class == 0 {
                "0".to_string()
            } else {
                format!("{:#x}", e.class)
            };
            let _ = writeln!(s, " {class:>6} {ty:>5} {:>7}  tun_metadata{i}", e.len);
        }
        s
    }
}

static GLOBAL: RwLock<Option<Arc<TlvMap>>> = RwLock::new(None);

thread_local! {
    static LOCAL: RefCell<Option<Arc<TlvMap>>> = const { RefCell::new(None) };
}

/// The map in force on this thread: [`with_map`]'s, else the process's.
pub fn current() -> Arc<TlvMap> {
    if let Some(m) = LOCAL.with(|l| l.borrow().clone()) {
        return m;
    }
    GLOBAL
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// Makes `map` the process's map (the daemon's, after `add-tlv-map`).
pub fn set_global(map: Arc<TlvMap>) {
    *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Some(map);
}

/// Adds mappings to the process's map, all or none (`ctl add-tlv-map`
/// on a running daemon).
pub fn add_global(reqs: &[TlvRequest]) -> Result<(), TlvError> {
    modify_global(|map| map.add(reqs))
}

/// Changes the process's map with `change`, all or nothing.
pub fn modify_global(
    change: impl FnOnce(&mut TlvMap) -> Result<(), TlvError>,
) -> Result<(), TlvError> {
    let mut global = GLOBAL.write().unwrap_or_else(|e| e.into_inner());
    let mut map = global.as_deref().cloned().unwrap_or_default();
    change(&mut map)?;
    *global = Some(Arc::new(map));
    Ok(())
}

/// Runs `f` with `map` in force on this thread.
pub fn with_map<R>(map: &Arc<TlvMap>, f: impl FnOnce() -> R) -> R {
    let prev = LOCAL.with(|l| l.replace(Some(map.clone())));
    struct Restore(Option<Arc<TlvMap>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            LOCAL.with(|l| *l.borrow_mut() = prev);
        }
    }
    let _restore = Restore(prev);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse_allocate_and_dump_as_ovs_prints_them() {
        let m = TlvMap::from_text(
            "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0xffff,type=1,len=8}->tun_metadata1",
        )
        .unwrap();
        assert_eq!(m.get(0).unwrap().offset, 0);
        assert_eq!(m.get(1).unwrap().offset, 4);
        assert_eq!(m.by_option(0xffff, 1).map(|(i, _)| i), Some(1));
        let dump = m.dump();
        assert!(dump.contains(" allocated option space=12\n"), "{dump}");
        assert!(
            dump.contains(" 0xffff     0       4  tun_metadata0\n"),
            "{dump}"
        );
        assert!(
            dump.contains(" 0xffff   0x1       8  tun_metadata1\n"),
            "{dump}"
        );
    }

    #[test]
    fn bad_mappings_are_refused_with_the_reason() {
        let mut m = TlvMap::from_text("{class=1,type=2,len=4}->tun_metadata3").unwrap();
        let again = parse_tlv_requests("{class=1,type=2,len=4}->tun_metadata4").unwrap();
        assert!(m
            .add(&again)
            .unwrap_err()
            .to_string()
            .contains("already mapped to tun_metadata3"));
        let taken = parse_tlv_requests("{class=1,type=9,len=4}->tun_metadata3").unwrap();
        assert!(m
            .add(&taken)
            .unwrap_err()
            .to_string()
            .contains("tun_metadata3 is already mapped"));
        assert!(parse_tlv_requests("{class=1,type=2,len=5}->tun_metadata0")
            .unwrap_err()
            .contains("multiple of 4"));
        assert!(parse_tlv_requests("{class=1,type=2,len=4}->tun_metadata64").is_err());
        assert!(parse_tlv_requests("{class=1,len=4}->tun_metadata1").is_err());
        let full: Vec<String> = (0..5)
            .map(|i| format!("{{class=2,type={i},len=16}}->tun_metadata{}", 10 + i))
            .collect();
        let err = TlvMap::from_text(&full.join(",")).unwrap_err();
        assert!(err.contains("no room"), "{err}");
    }

    #[test]
    fn a_deleted_mapping_frees_its_field_and_option_space() {
        let mut m = TlvMap::from_text(
            "{class=1,type=1,len=16}->tun_metadata0,{class=1,type=2,len=16}->tun_metadata1,\
             {class=1,type=3,len=16}->tun_metadata2,{class=1,type=4,len=16}->tun_metadata3",
        )
        .unwrap();
        let more = parse_tlv_requests("{class=1,type=5,len=8}->tun_metadata4").unwrap();
        assert!(matches!(m.add(&more), Err(TlvError::TableFull { .. })));
        m.delete(&[1, 9]).unwrap();
        assert_eq!(m.get(1), None);
        m.add(&more).unwrap();
        assert_eq!(m.get(4).unwrap().offset, 16);
        assert_eq!(m.delete(&[64]), Err(TlvError::BadFieldIdx(64)));
        assert_eq!(
            m.add(&[TlvRequest {
                class: 1,
                opt_type: 9,
                len: 6,
                index: 5
            }]),
            Err(TlvError::BadOptLen(6))
        );
    }

    #[test]
    fn a_threads_map_overrides_the_process_map() {
        let m = Arc::new(TlvMap::from_text("{class=7,type=7,len=4}->tun_metadata9").unwrap());
        with_map(&m, || assert!(current().get(9).is_some()));
        assert!(LOCAL.with(|l| l.borrow().is_none()));
    }
}
