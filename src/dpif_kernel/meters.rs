//! The kernel datapath's meters, through the `ovs_meter` family, as OVS's
//! dpif-netlink drives them: the features asked for at open, and meters
//! refused where the module has no such family, no drop band, or the
//! broken meter ids of some 4.15–4.17 kernels (every meter stored as id
//! 0: two meters set, both must come back by their ids).

use messages::dpif::{DpifError, MeterFeatures};
use messages::meter::{Band, Meter, MeterStats};
use messages::netlink::meter::*;
use tokio::runtime::Handle;

use super::control::{ControlError, FamilyResolver, GenlConnection};

/// The ids OVS probes with: high, so as not to meet its own meters (which
/// it numbers from 0), and within the smallest meter table of kernels
/// from 5.10 on, which index meters by `id % size`.
const PROBE_IDS: [u32; 2] = [1021, 1022];

pub struct KernelMeters {
    conn: GenlConnection<MeterMessage>,
    dp_ifindex: i32,
    features: MeterFeatures,
}

fn control_err(e: ControlError) -> DpifError {
    DpifError::Io(std::io::Error::other(e))
}

impl KernelMeters {
    /// The datapath's meters, or why there are none (for the log: a
    /// meter mod is then refused, as on a datapath without meters).
    pub fn open(
        runtime: &Handle,
        resolver: &FamilyResolver,
        dp_ifindex: i32,
    ) -> Result<KernelMeters, String> {
        let family = resolver
            .resolve(OVS_METER_FAMILY)
            .map_err(|e| format!("resolving {OVS_METER_FAMILY}: {e}"))?
            .ok_or_else(|| {
                format!("the openvswitch module has no {OVS_METER_FAMILY} family (Linux < 4.15)")
            })?;
        let conn = GenlConnection::open(runtime, family)
            .map_err(|e| format!("{OVS_METER_FAMILY} socket: {e}"))?;
        let mut meters = KernelMeters {
            conn,
            dp_ifindex,
            features: MeterFeatures {
                max_meters: 0,
                max_bands: 0,
            },
        };
        let reply = meters
            .request(OVS_METER_CMD_FEATURES, Vec::new())
            .map_err(|e| format!("OVS_METER_CMD_FEATURES: {e}"))?;
        let (max_meters, max_bands, drop) =
            features_of(&reply).map_err(|e| format!("OVS_METER_CMD_FEATURES: {e}"))?;
        if !drop || max_meters == 0 || max_bands == 0 {
            return Err(format!(
                "the kernel's meters have no drop band (max_meters {max_meters}, max_bands {max_bands})"
            ));
        }
        meters.features = MeterFeatures {
            max_meters,
            max_bands: max_bands.min(u32::from(u8::MAX)) as u8,
        };
        if meters.ids_are_broken() {
            return Err(
                "the kernel's meter implementation is broken (meters lose their ids; \
                        Linux 4.15–4.17)"
                    .into(),
            );
        }
        Ok(meters)
    }

    pub fn features(&self) -> MeterFeatures {
        self.features
    }

    /// One request; the reply's attributes, or the errno as a refusal.
    fn request(&self, cmd: u8, attrs: Vec<MeterAttr>) -> Result<Vec<MeterAttr>, DpifError> {
        let what = match cmd {
            OVS_METER_CMD_FEATURES => "OVS_METER_CMD_FEATURES",
            OVS_METER_CMD_SET => "OVS_METER_CMD_SET",
            OVS_METER_CMD_DEL => "OVS_METER_CMD_DEL",
            _ => "OVS_METER_CMD_GET",
        };
        match self
            .conn
            .request(MeterMessage::new(cmd, self.dp_ifindex, attrs), 0)
            .map_err(control_err)?
        {
            Ok(replies) => Ok(replies.into_iter().flat_map(|m| m.attrs).collect()),
            Err(errno) => Err(DpifError::Refused(format!(
                "{what}: {}",
                std::io::Error::from_raw_os_error(errno)
            ))),
        }
    }

    /// OVS's `probe_broken_meters`: two meters set under the probe ids
    /// must both be found again by them (unless one already is).
    fn ids_are_broken(&self) -> bool {
        if PROBE_IDS.iter().any(|&id| self.get(id).is_ok()) {
            return false;
        }
        let probe = |rate| Meter {
            id: rate,
            pktps: false,
            burst: false,
            stats: false,
            bands: vec![Band {
                rate,
                burst_size: 0,
            }],
        };
        for (i, &id) in PROBE_IDS.iter().enumerate() {
            let _ = self.set(id, &probe(i as u32 + 1));
        }
        let broken = PROBE_IDS.iter().any(|&id| self.get(id).is_err());
        for id in PROBE_IDS {
            let _ = self.del(id);
        }
        broken
    }

    pub fn set(&self, id: u32, meter: &Meter) -> Result<(), DpifError> {
        if meter.bands.len() > usize::from(self.features.max_bands) {
            return Err(DpifError::Refused(format!(
                "{} bands, the kernel's meters take at most {} (OFPMMFC_OUT_OF_BANDS)",
                meter.bands.len(),
                self.features.max_bands
            )));
        }
        let reply = self.request(OVS_METER_CMD_SET, set_attrs(id, meter))?;
        match id_of(&reply) {
            Some(got) if got != id => Err(DpifError::Refused(format!(
                "OVS_METER_CMD_SET: meter {id} came back as {got}"
            ))),
            _ => Ok(()),
        }
    }

    /// Deletes meter `id`; one the kernel does not have is not an error.
    pub fn del(&self, id: u32) -> Result<(), DpifError> {
        self.request(OVS_METER_CMD_DEL, vec![MeterAttr::Id(id)])
            .map(|_| ())
    }

    pub fn get(&self, id: u32) -> Result<MeterStats, DpifError> {
        let reply = self.request(OVS_METER_CMD_GET, vec![MeterAttr::Id(id)])?;
        match id_of(&reply) {
            Some(got) if got != id => Err(DpifError::Refused(format!(
                "OVS_METER_CMD_GET: meter {id} came back as {got}"
            ))),
            _ => Ok(stats_of(&reply)),
        }
    }
}
