//! OpenFlow meters (OVS's `struct meter` and `ofputil_meter_config`): a
//! meter measures the rate of the packets the `meter:N` instruction sends
//! through it and drops those above the rate of its band. Parsing is in
//! `parse::rules::meter`, printing in `format::meter`, translation in the
//! actors' `xlate` (a datapath `meter(ID)` action) and the token buckets
//! in each datapath.

/// The largest meter number a rule may name (`OFPM13_MAX`).
pub const METER_MAX: u32 = 0xffff_0000;
/// The meter for packets sent to the slow path (`OFPM13_SLOWPATH`).
pub const METER_SLOWPATH: u32 = 0xffff_fffd;
/// The meter for packets sent to controllers (`OFPM13_CONTROLLER`): a
/// `controller` action without a meter of its own goes through it.
pub const METER_CONTROLLER: u32 = 0xffff_fffe;
/// Every meter, in a delete or a statistics request (`OFPM13_ALL`).
pub const METER_ALL: u32 = 0xffff_ffff;

/// The most bands a meter may have (what OVS's userspace datapath
/// reports as `max_bands`).
pub const MAX_BANDS: usize = 8;

/// The most meters a datapath holds (OVS's userspace datapath's
/// `MAX_METERS`, 1 << 18).
pub const MAX_METERS: u32 = 1 << 18;

/// A meter band. Only OpenFlow's `drop` band exists here, as in OVS's
/// userspace datapath (it refuses `dscp_remark` with OFPMMFC_BAD_BAND).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Band {
    /// In kbit/s or packets/s, as the meter's unit says.
    pub rate: u32,
    /// The bucket's depth, in kbit or packets (0: the datapath's default).
    pub burst_size: u32,
}

/// A meter as `add-meter` gives it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Meter {
    pub id: u32,
    /// Rates in packets/s (`pktps`) rather than kbit/s (`kbps`).
    pub pktps: bool,
    /// The bands' `burst_size` applies (`burst`).
    pub burst: bool,
    /// Statistics are asked for (`stats`).
    pub stats: bool,
    pub bands: Vec<Band>,
}

/// The OpenFlow flags of a meter (`OFPMF13_*`).
pub mod flags {
    pub const KBPS: u16 = 1 << 0;
    pub const PKTPS: u16 = 1 << 1;
    pub const BURST: u16 = 1 << 2;
    pub const STATS: u16 = 1 << 3;
}

impl Meter {
    /// The meter's OpenFlow flags.
    pub fn flags(&self) -> u16 {
        let mut f = if self.pktps {
            flags::PKTPS
        } else {
            flags::KBPS
        };
        if self.burst {
            f |= flags::BURST;
        }
        if self.stats {
            f |= flags::STATS;
        }
        f
    }
}

/// What a datapath counted for one meter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeterStats {
    /// Packets and bytes that went through the meter.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Per band: packets and bytes it dropped.
    pub bands: Vec<(u64, u64)>,
}

/// A token bucket per band, as OVS's userspace datapath keeps them
/// (`dp_meter_band`): tokens accrue at the band's rate up to its burst
/// size; a packet that finds too few is the band's, and the highest-rate
/// band that takes a packet drops it. Pure: the caller brings the clock.
#[derive(Clone, Debug)]
pub struct TokenBuckets {
    pktps: bool,
    /// Per band: its rate, bucket size and tokens, in milli-packets or bits.
    bands: Vec<BucketBand>,
    last_ms: u64,
    stats: MeterStats,
}

#[derive(Clone, Debug)]
struct BucketBand {
    rate: u64,
    /// In milli-packets (pktps) or bits (kbps).
    size: u64,
    tokens: u64,
}

impl TokenBuckets {
    /// Buckets for `meter`, full at `now_ms`. A band's bucket holds its
    /// burst size, or one second of its rate without one (as OVS).
    pub fn new(meter: &Meter, now_ms: u64) -> Self {
        let bands = meter
            .bands
            .iter()
            .map(|b| {
                let burst = if b.burst_size != 0 {
                    b.burst_size
                } else {
                    b.rate
                };
                // pktps in milli-packets, kbps in bits.
                let size = u64::from(burst) * 1000;
                BucketBand {
                    rate: u64::from(b.rate),
                    size,
                    tokens: size,
                }
            })
            .collect();
        TokenBuckets {
            pktps: meter.pktps,
            bands,
            last_ms: now_ms,
            stats: MeterStats {
                bands: vec![(0, 0); meter.bands.len()],
                ..MeterStats::default()
            },
        }
    }

    /// Meters one packet of `len` bytes at `now_ms`: true if it passes.
    pub fn admit(&mut self, len: usize, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.stats.packets_in += 1;
        self.stats.bytes_in += len as u64;
        // A packet costs 1000 milli-packets, or its length in bits.
        let cost = if self.pktps { 1000 } else { len as u64 * 8 };
        // The exceeded band of the highest rate takes the packet.
        let mut exceeded: Option<(usize, u64)> = None;
        for (i, b) in self.bands.iter_mut().enumerate() {
            // rate/s × ms: milli-packets for pktps, bits for kbps.
            b.tokens = (b.tokens + b.rate * elapsed).min(b.size);
            if b.tokens >= cost {
                b.tokens -= cost;
            } else if exceeded.is_none_or(|(_, rate)| rate < b.rate) {
                exceeded = Some((i, b.rate));
            }
        }
        match exceeded {
            Some((i, _)) => {
                self.stats.bands[i].0 += 1;
                self.stats.bands[i].1 += len as u64;
                false
            }
            None => true,
        }
    }

    /// What the buckets counted.
    pub fn stats(&self) -> &MeterStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(pktps: bool, rate: u32, burst_size: u32) -> Meter {
        Meter {
            id: 1,
            pktps,
            burst: burst_size != 0,
            stats: true,
            bands: vec![Band { rate, burst_size }],
        }
    }

    #[test]
    fn a_pktps_band_passes_its_rate_and_drops_the_rest() {
        let mut b = TokenBuckets::new(&meter(true, 100, 10), 0);
        // The burst first: 10 packets at once, the 11th dropped.
        let passed = (0..11).filter(|_| b.admit(60, 0)).count();
        assert_eq!(passed, 10);
        // Then 1000 packets a second for 10 s: 100/s pass.
        let mut passed = 0;
        for ms in 1..=10_000u64 {
            passed += usize::from(b.admit(60, ms));
        }
        assert!((990..=1010).contains(&passed), "{passed}");
        let s = b.stats();
        assert_eq!(s.packets_in, 10_011);
        assert_eq!(s.bands[0].0, 10_011 - 10 - passed as u64);
    }

    #[test]
    fn a_kbps_band_counts_bits() {
        // 800 kbit/s = 100 000 bytes/s: 1000-byte packets, 100 a second.
        let mut b = TokenBuckets::new(&meter(false, 800, 0), 0);
        let mut passed = 0;
        for ms in 0..10_000u64 {
            passed += usize::from(b.admit(1000, ms));
        }
        // One second's worth of burst, then the rate.
        assert!((1090..=1110).contains(&passed), "{passed}");
    }
}
