//! Every hash in the tree: the ufid that names an installed megaflow (a
//! keyed 128-bit SipHash-1-3: two megaflows with one ufid would make the
//! second put look like a duplicate, so that hash must resist chosen
//! inputs), a fast keyed hash of flow words for naming upcalls, the steps
//! the hash tables chain over masked words ([`mix_word`], [`fold_word`]
//! with [`finish_fold`]) and fold ufids with ([`fold_ufid`]), and OVS's
//! own hashes where a choice must be OVS's.

use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::dpif::Ufid;
use crate::flow::Flow;
use crate::megaflow::Megaflow;

/// A fast 64-bit hash of a flow (not cryptographic). `seed` picks one of
/// a family of hashes.
#[inline]
pub fn flow_hash(flow: &Flow, seed: u64) -> u64 {
    let mut h = WordsHasher::new(seed ^ secret());
    h.words(flow.words());
    h.finish() as u64
}

/// The ufid of a packet's flow key, as a datapath reports it in upcalls.
///
/// It only names an upcall (installs use [`megaflow_ufid`]), so it takes
/// the fast hash, as OVS's datapath takes murmur for it.
pub fn key_ufid(key: &Flow) -> Ufid {
    let mut h = WordsHasher::new(secret() ^ 1);
    h.words(key.words());
    h.finish()
}

/// The ufid upcalld gives a megaflow: a function of its masked key and its
/// mask, so that two upcalls that translate to the same megaflow yield the
/// same ufid and the second put can be recognized as a duplicate.
///
/// Hashes the map of the words the mask pins, then each pinned word as
/// (mask word, masked key word): the encoding names the same megaflow
/// exactly as the whole key and mask do, and costs a few words, not a
/// flow's 33.
pub fn megaflow_ufid(megaflow: &Megaflow) -> Ufid {
    let (k0, k1) = ufid_key();
    let mut h = SipHasher13::new_with_keys(k0, k1);
    h.write_u64(megaflow.map());
    h.write_u64(megaflow.len() as u64);
    for w in megaflow.words() {
        h.write_u64(w.mask);
        h.write_u64(w.value);
    }
    h.finish128().as_u128()
}

/// This process's ufid key, drawn at random on first use: as OVS seeds its
/// ufid hash per process, so that nobody can precompute flows whose ufids
/// collide.
fn ufid_key() -> (u64, u64) {
    use std::hash::BuildHasher;
    static KEY: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    *KEY.get_or_init(|| {
        let r = std::collections::hash_map::RandomState::new();
        (r.hash_one(0x5eed_u64), r.hash_one(0x5eed_u64 ^ 1))
    })
}

/// This process's seed for the fast hash, drawn at random on first use.
fn secret() -> u64 {
    use std::hash::BuildHasher;
    static SECRET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SECRET.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
}

/// wyhash's secrets.
const S: [u64; 4] = [
    0x2d35_8dcc_aa6c_78a5,
    0x8bb8_4b93_962e_acc9,
    0x4b33_a62e_d433_d4a3,
    0x4d5a_2da5_1de1_aa47,
];

/// wyhash's mixing step: the two halves of a 128-bit product, folded.
#[inline(always)]
fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

/// A fast 128-bit hash of 64-bit words: two lanes of wyhash's folded
/// multiply, two words per step (fewer instructions than XXH3 without
/// AVX2). Not for megaflow ufids: nothing vouches for its resistance to
/// chosen inputs.
struct WordsHasher {
    a: u64,
    b: u64,
    n: u64,
}

impl WordsHasher {
    #[inline(always)]
    fn new(seed: u64) -> Self {
        WordsHasher {
            a: seed ^ S[0],
            b: seed.rotate_left(32) ^ S[3],
            n: 0,
        }
    }

    #[inline(always)]
    fn pair(&mut self, x: u64, y: u64) {
        self.a = mum(x ^ S[1], y ^ self.a);
        self.b = mum(y ^ S[2], x ^ self.b);
        self.n += 2;
    }

    #[inline(always)]
    fn words(&mut self, words: &[u64]) {
        let mut pairs = words.chunks_exact(2);
        for p in &mut pairs {
            self.pair(p[0], p[1]);
        }
        if let [x] = pairs.remainder() {
            self.a = mum(x ^ S[1], self.a ^ S[2]);
            self.b = mum(x ^ S[3], self.b ^ S[0]);
            self.n += 1;
        }
    }

    #[inline(always)]
    fn finish(&self) -> u128 {
        let lo = mum(self.a ^ S[0] ^ self.n, self.b ^ S[1]);
        let hi = mum(self.b ^ S[2] ^ self.n, self.a ^ S[3]);
        (u128::from(hi) << 64) | u128::from(lo)
    }
}

/// 2^64 divided by the golden ratio: an odd multiplier that spreads every
/// input bit over the high bits.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// One step of the table hash: word `x` folded into `h` with a multiply
/// and a xor-shift. Chained over a key's masked words it is how the
/// classifier's stage indexes (cumulatively, stage after stage) and the
/// exact-match cache hash keys. Unkeyed: the tables it serves hold what
/// the rules and the datapath put there, and their chains are bounded by
/// the index, not by the hash.
#[inline(always)]
pub fn mix_word(h: u64, x: u64) -> u64 {
    let v = (h ^ x).wrapping_mul(GOLDEN);
    v ^ (v >> 29)
}

/// The cheaper chain, for the megaflow table that a packet probes once
/// per mask group: words folded with a rotate and a xor, spread once at
/// the end by [`finish_fold`], a multiply per probe instead of one per
/// word.
#[inline(always)]
pub fn fold_word(h: u64, x: u64) -> u64 {
    h.rotate_left(23) ^ x
}

/// Spreads a [`fold_word`] chain's bits (a xor-shift, a multiply, a
/// xor-shift).
#[inline(always)]
pub fn finish_fold(h: u64) -> u64 {
    let h = (h ^ (h >> 31)).wrapping_mul(GOLDEN);
    h ^ (h >> 29)
}

/// A ufid folded to 64 bits for a hash table. A ufid is a hash already;
/// mixing its halves keeps small test ufids spread and lets the bits that
/// chose a ukey shard still spread the entries within it.
#[inline]
pub fn fold_ufid(ufid: Ufid) -> u64 {
    finish_fold((ufid >> 64) as u64 ^ ufid as u64)
}

/// A 32-bit mixing step (a multiply-xorshift finalizer). Bucket choices
/// made with it spread as OVS's do, but are not the same buckets OVS
/// would choose for the same packet.
pub fn mix32(a: u32, b: u32) -> u32 {
    let mut h = (u64::from(a) << 32 | u64::from(b)).wrapping_mul(GOLDEN);
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    (h ^ (h >> 32)) as u32
}

/// OVS's `hash_add` (lib/hash.h, the murmur3 step it uses without SSE 4.2,
/// as Debian's amd64 build has it).
pub fn ovs_hash_add(hash: u32, data: u32) -> u32 {
    let mut h = hash;
    if data != 0 {
        let d = data
            .wrapping_mul(0xcc9e_2d51)
            .rotate_left(15)
            .wrapping_mul(0x1b87_3593);
        h ^= d;
    }
    h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

/// OVS's `hash_finish`.
pub fn ovs_hash_finish(hash: u32, fin: u32) -> u32 {
    let mut h = hash ^ fin;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// OVS's `hash_bytes`: little-endian words of `bytes`, the tail
/// zero-padded. A select group's `selection_method=hash` hashes each
/// field's bytes (network order) with it, so buckets are OVS's.
pub fn ovs_hash_bytes(bytes: &[u8], basis: u32) -> u32 {
    let mut h = basis;
    let mut chunks = bytes.chunks_exact(4);
    for c in &mut chunks {
        h = ovs_hash_add(h, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut t = [0u8; 4];
        t[..tail.len()].copy_from_slice(tail);
        h = ovs_hash_add(h, u32::from_le_bytes(t));
    }
    ovs_hash_finish(h, bytes.len() as u32)
}

/// OVS's `jhash_bytes`: Bob Jenkins' lookup3 over little-endian words of
/// `bytes`, the tail zero-padded — the hash of `multipath` and `bundle`,
/// whose choices a controller may rely on across switches.
pub fn jhash_bytes(bytes: &[u8], basis: u32) -> u32 {
    let word = |c: &[u8]| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        u32::from_le_bytes(w)
    };
    let init = 0xdead_beef_u32
        .wrapping_add(bytes.len() as u32)
        .wrapping_add(basis);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut rest = bytes;
    while rest.len() >= 12 {
        a = a.wrapping_add(word(&rest[0..4]));
        b = b.wrapping_add(word(&rest[4..8]));
        c = c.wrapping_add(word(&rest[8..12]));
        jhash_mix(&mut a, &mut b, &mut c);
        rest = &rest[12..];
    }
    if !rest.is_empty() {
        let mut tail = [0u8; 12];
        tail[..rest.len()].copy_from_slice(rest);
        a = a.wrapping_add(word(&tail[0..4]));
        b = b.wrapping_add(word(&tail[4..8]));
        c = c.wrapping_add(word(&tail[8..12]));
        jhash_final(&mut a, &mut b, &mut c);
    }
    c
}

/// lookup3's `mix`.
fn jhash_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// lookup3's `final`.
fn jhash_final(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

/// OVS's `hash_int` (`hash_2words(x, basis)`).
pub fn ovs_hash_int(x: u32, basis: u32) -> u32 {
    ovs_hash_finish(ovs_hash_add(ovs_hash_add(x, 0), basis), 8)
}

/// OVS's `hash_uint64`.
pub fn ovs_hash_uint64(x: u64) -> u32 {
    ovs_hash_finish(ovs_hash_add(ovs_hash_add(0, x as u32), (x >> 32) as u32), 8)
}

/// A hash of the Ethernet addresses, VLAN, IP addresses, protocol and
/// ports that is the same in both directions, seeded with `basis`: the
/// datapath's `hash(sym_l4(basis))` and the slow path's default select.
pub fn symmetric_l4_hash(f: &Flow, basis: u32) -> u32 {
    let xor6 = |a: [u8; 6], b: [u8; 6]| {
        let mut x = [0u8; 8];
        for i in 0..6 {
            x[i] = a[i] ^ b[i];
        }
        u64::from_le_bytes(x)
    };
    let mut h = mix32(basis, (xor6(f.dl_src, f.dl_dst) >> 32) as u32);
    h = mix32(h, xor6(f.dl_src, f.dl_dst) as u32);
    h = mix32(
        h,
        u32::from(f.vlans[0].tci & crate::flow::VLAN_VID_MASK) << 16 | u32::from(f.dl_type),
    );
    if f.dl_type == crate::flow::ETH_TYPE_IP {
        h = mix32(h, f.nw_src ^ f.nw_dst);
    } else if f.dl_type == crate::flow::ETH_TYPE_IPV6 {
        for i in 0..4 {
            let word =
                |a: [u8; 16]| u32::from_le_bytes(a[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
            h = mix32(h, word(f.ipv6_src) ^ word(f.ipv6_dst));
        }
    }
    if f.is_ip_any() {
        h = mix32(h, u32::from(f.nw_proto));
        if matches!(
            f.nw_proto,
            crate::flow::IPPROTO_TCP | crate::flow::IPPROTO_UDP | crate::flow::IPPROTO_SCTP
        ) {
            h = mix32(h, u32::from(f.tp_src ^ f.tp_dst));
        }
    }
    // 0 means "no hash" to select groups.
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(nw_src: u32, tp_dst: u16) -> Flow {
        Flow {
            in_port: 1,
            dl_type: 0x0800,
            nw_src,
            nw_proto: 6,
            tp_dst,
            ..Flow::default()
        }
    }

    fn ufid(key: &Flow, mask: &Flow) -> Ufid {
        megaflow_ufid(&Megaflow::new(key, mask))
    }

    #[test]
    fn megaflow_ufid_depends_on_the_masked_key_and_the_mask_only() {
        let by_src = Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            nw_src: u32::MAX,
            ..Flow::default()
        };
        let by_port = Flow {
            tp_dst: u16::MAX,
            ..by_src
        };
        // Keys that differ only outside the mask: one megaflow.
        assert_eq!(ufid(&flow(7, 80), &by_src), ufid(&flow(7, 443), &by_src));
        assert_ne!(ufid(&flow(7, 80), &by_src), ufid(&flow(8, 80), &by_src));
        // Same masked key, other mask; and a key word of zero under the
        // mask is not the same as that word left out of the mask.
        assert_ne!(ufid(&flow(7, 80), &by_src), ufid(&flow(7, 80), &by_port));
        assert_ne!(ufid(&flow(7, 0), &by_src), ufid(&flow(7, 0), &by_port));
    }

    use crate::flow::FLOW_U64S;

    #[test]
    fn every_single_bit_of_a_flow_changes_its_hashes() {
        let base = flow(0x0a00_0001, 80);
        let mut lows = std::collections::HashSet::new();
        let mut highs = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        let mut megaflows = std::collections::HashSet::new();
        let all = Flow {
            in_port: u32::MAX,
            ..Flow::default()
        };
        for bit in 0..FLOW_U64S * 64 {
            let mut f = base;
            f.words_mut()[bit / 64] ^= 1 << (bit % 64);
            let u = key_ufid(&f);
            lows.insert(u as u64);
            highs.insert((u >> 64) as u64);
            hashes.insert(flow_hash(&f, 0));
            // A mask differing in one bit is another megaflow.
            let mut m = all;
            m.words_mut()[bit / 64] ^= 1 << (bit % 64);
            megaflows.insert(megaflow_ufid(&Megaflow::new(&base, &m)));
        }
        let n = FLOW_U64S * 64;
        assert_eq!((lows.len(), highs.len(), hashes.len()), (n, n, n));
        assert_eq!(megaflows.len(), n);
    }

    #[test]
    fn key_ufids_and_hashes_tell_flows_apart() {
        let flows: Vec<Flow> = (0..2000u32).map(|i| flow(i, (i % 7) as u16)).collect();
        let ufids: std::collections::HashSet<Ufid> = flows.iter().map(key_ufid).collect();
        let hashes: std::collections::HashSet<u64> =
            flows.iter().map(|f| flow_hash(f, 0)).collect();
        assert_eq!(ufids.len(), flows.len());
        assert_eq!(hashes.len(), flows.len());
        // The same value in another field is another flow.
        let a = Flow {
            nw_src: 5,
            ..Flow::default()
        };
        let b = Flow {
            nw_dst: 5,
            ..Flow::default()
        };
        assert_ne!(key_ufid(&a), key_ufid(&b));
    }
}
