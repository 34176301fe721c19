//! TCP sequence and window tracking, the algorithm OVS's userspace
//! conntrack took from pf (Guido van Rooij's "Real Stateful TCP Packet
//! Filtering in IP Filter"): each end's highest sequence sent (`seqlo`),
//! the highest the other end's window allows (`seqhi`) and its largest
//! window; a segment is valid when it lies inside the window and acks
//! nothing beyond what was sent.

use super::packet::{
    TcpSegment, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, WSCALE_FLAG, WSCALE_MASK,
    WSCALE_UNKNOWN,
};
use super::timeouts::Timeout;

/// A TCP end's state, in OVS's order (`CT_DPIF_TCPS_*`): comparisons
/// between states mean "further along".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TcpState {
    #[default]
    Closed,
    Listen,
    SynSent,
    SynRecv,
    Established,
    CloseWait,
    FinWait1,
    Closing,
    LastAck,
    FinWait2,
    TimeWait,
}

impl TcpState {
    /// The name `dpctl/dump-conntrack` prints, after OVS's coalescing of
    /// the states the kernel does not tell apart.
    pub fn dump_name(self) -> &'static str {
        match self {
            TcpState::Closed => "CLOSED",
            TcpState::Listen => "LISTEN",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv | TcpState::Established => "ESTABLISHED",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::FinWait1 => "FIN_WAIT_1",
            TcpState::Closing => "CLOSING",
            TcpState::LastAck => "LAST_ACK",
            TcpState::FinWait2 | TcpState::TimeWait => "TIME_WAIT",
        }
    }
}

/// One end of a tracked TCP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpPeer {
    pub seqlo: u32,
    pub seqhi: u32,
    pub max_win: u32,
    pub state: TcpState,
    pub wscale: u8,
}

/// Both ends: `[original direction's sender, reply direction's sender]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpConn {
    pub peer: [TcpPeer; 2],
}

/// What a packet does to a tracked connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Valid, and the connection is (now) established: `+est`.
    Valid,
    /// Valid, but the connection has not seen a reply yet: `+new`.
    ValidNew,
    /// Not valid for this connection: `+inv`.
    Invalid,
    /// Opens a new connection in place of a closed one.
    New,
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
fn seq_geq(a: u32, b: u32) -> bool {
    !seq_lt(a, b)
}
fn seq_gt(a: u32, b: u32) -> bool {
    seq_lt(b, a)
}

/// Flag combinations no TCP stack sends.
pub fn invalid_flags(flags: u16) -> bool {
    if flags & TCP_SYN != 0 {
        if flags & (TCP_RST | TCP_FIN) != 0 {
            return true;
        }
    } else if flags & (TCP_ACK | TCP_RST) == 0 {
        return true;
    }
    flags & TCP_ACK == 0 && flags & (TCP_FIN | TCP_PSH | TCP_URG) != 0
}

/// Whether a segment may open a connection: any valid segment but a
/// SYN-ACK (OVS picks up connections already established, but not half
/// open ones).
pub fn valid_new(seg: &TcpSegment) -> bool {
    !invalid_flags(seg.flags) && seg.flags & (TCP_SYN | TCP_ACK) != (TCP_SYN | TCP_ACK)
}

const MAX_ACK_WINDOW: i64 = 0xffff + 1500;
const TCP_MAX_WSCALE: u8 = 14;

impl TcpConn {
    /// The state of a connection opened by `seg`, and its timeout.
    pub fn new(seg: &TcpSegment) -> (TcpConn, Timeout) {
        let mut c = TcpConn::default();
        let [src, dst] = &mut c.peer;
        src.seqlo = seg.seq;
        src.seqhi = seg.seq.wrapping_add(seg.payload_len).wrapping_add(1);
        if seg.flags & TCP_SYN != 0 {
            src.seqhi = src.seqhi.wrapping_add(1);
            src.wscale = seg.wscale;
        } else {
            src.wscale = WSCALE_UNKNOWN;
            dst.wscale = WSCALE_UNKNOWN;
        }
        src.max_win = u32::from(seg.window).max(1);
        if src.wscale & WSCALE_MASK != 0 {
            let sws = src.wscale & WSCALE_MASK;
            src.max_win = src.max_win.div_ceil(1 << sws);
        }
        if seg.flags & TCP_FIN != 0 {
            src.seqhi = src.seqhi.wrapping_add(1);
        }
        dst.seqhi = 1;
        dst.max_win = 1;
        src.state = TcpState::SynSent;
        dst.state = TcpState::Closed;
        (c, Timeout::TcpFirstPacket)
    }

    /// Tracks `seg`, sent in the reply direction if `reply`. Returns the
    /// verdict and, when the connection's timeout changes, the new one.
    pub fn update(&mut self, seg: &TcpSegment, reply: bool) -> (Update, Option<Timeout>) {
        let [p0, p1] = &mut self.peer;
        let (src, dst) = if reply { (p1, p0) } else { (p0, p1) };
        let flags = seg.flags;
        if invalid_flags(flags) {
            return (Update::Invalid, None);
        }
        if flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            if dst.state >= TcpState::FinWait2 && src.state >= TcpState::FinWait2 {
                src.state = TcpState::Closed;
                dst.state = TcpState::Closed;
                return (Update::New, None);
            } else if src.state <= TcpState::SynSent {
                src.state = TcpState::SynSent;
                return (Update::ValidNew, Some(Timeout::TcpFirstPacket));
            }
        }

        let mut sws = 0u8;
        let mut dws = 0u8;
        if src.wscale & WSCALE_FLAG != 0 && dst.wscale & WSCALE_FLAG != 0 && flags & TCP_SYN == 0 {
            sws = src.wscale & WSCALE_MASK;
            dws = dst.wscale & WSCALE_MASK;
        } else if src.wscale & WSCALE_UNKNOWN != 0
            && dst.wscale & WSCALE_UNKNOWN != 0
            && flags & TCP_SYN == 0
        {
            sws = TCP_MAX_WSCALE;
            dws = TCP_MAX_WSCALE;
        }

        let mut win = u32::from(seg.window);
        let orig_seq = seg.seq;
        let mut seq = seg.seq;
        let mut ack = seg.ack;
        let mut end = seq.wrapping_add(seg.payload_len);
        if flags & TCP_SYN != 0 {
            end = end.wrapping_add(1);
        }
        if flags & TCP_FIN != 0 {
            end = end.wrapping_add(1);
        }
        let mut check_ackskew = true;
        if src.state < TcpState::SynSent {
            // The first packet from this end.
            if flags & TCP_SYN != 0 && dst.wscale & WSCALE_FLAG != 0 {
                src.wscale = seg.wscale;
                if src.wscale & WSCALE_FLAG != 0 {
                    // The initial window is not scaled.
                    sws = src.wscale & WSCALE_MASK;
                    win = win.div_ceil(1 << sws);
                    dws = dst.wscale & WSCALE_MASK;
                } else {
                    // The other end's scale does not apply after all.
                    dst.max_win <<= dst.wscale & WSCALE_MASK;
                    dst.wscale = 0;
                }
            }
            src.seqlo = seq;
            src.state = TcpState::SynSent;
            let room = end.wrapping_add((dst.max_win << dws).max(1));
            if src.seqhi == 1 || seq_geq(room, src.seqhi) {
                src.seqhi = room;
                // A new connection, or one picked up midstream: the acks
                // are not checked yet.
                check_ackskew = false;
            }
            if win > src.max_win {
                src.max_win = win;
            }
        }

        if flags & TCP_ACK == 0 || (ack == 0 && flags & (TCP_ACK | TCP_RST) == (TCP_ACK | TCP_RST))
        {
            // No ack to check (or a stack that sends RST|ACK with ack 0).
            ack = dst.seqlo;
        }
        if seq == end {
            // No data: the sequence number does not matter.
            seq = src.seqlo;
            end = seq;
        }

        let ackskew: i64 = if check_ackskew {
            i64::from(dst.seqlo.wrapping_sub(ack) as i32)
        } else {
            0
        };
        let in_window = seq_geq(src.seqhi, end)
            && seq_geq(seq, src.seqlo.wrapping_sub(dst.max_win << dws))
            && ackskew >= -MAX_ACK_WINDOW
            && ackskew <= (MAX_ACK_WINDOW << sws)
            && (flags & TCP_RST == 0
                || orig_seq == src.seqlo
                || orig_seq == src.seqlo.wrapping_add(1)
                || orig_seq.wrapping_add(1) == src.seqlo);
        if in_window {
            if src.max_win < win {
                src.max_win = win;
            }
            if seq_gt(end, src.seqlo) {
                src.seqlo = end;
            }
            let scaled = win << sws;
            if seq_geq(ack.wrapping_add(scaled), dst.seqhi) {
                dst.seqhi = ack.wrapping_add(scaled.max(1));
            }
            if flags & TCP_SYN != 0 && src.state < TcpState::SynSent {
                src.state = TcpState::SynSent;
            }
            if flags & TCP_FIN != 0 && src.state < TcpState::Closing {
                src.state = TcpState::Closing;
            }
            if flags & TCP_ACK != 0 {
                if dst.state == TcpState::SynSent {
                    dst.state = TcpState::Established;
                } else if dst.state == TcpState::Closing {
                    dst.state = TcpState::FinWait2;
                }
            }
            if flags & TCP_RST != 0 {
                src.state = TcpState::TimeWait;
                dst.state = TcpState::TimeWait;
            }
            let timeout = if src.state >= TcpState::FinWait2 && dst.state >= TcpState::FinWait2 {
                Timeout::TcpClosed
            } else if src.state >= TcpState::Closing && dst.state >= TcpState::Closing {
                Timeout::TcpFinWait
            } else if src.state < TcpState::Established || dst.state < TcpState::Established {
                Timeout::TcpOpening
            } else if src.state >= TcpState::Closing || dst.state >= TcpState::Closing {
                Timeout::TcpClosing
            } else {
                Timeout::TcpEstablished
            };
            (Update::Valid, Some(timeout))
        } else if (dst.state < TcpState::SynSent
            || dst.state >= TcpState::FinWait2
            || src.state >= TcpState::FinWait2)
            && seq_geq(src.seqhi.wrapping_add(MAX_ACK_WINDOW as u32), end)
            && seq_geq(seq, src.seqlo.wrapping_sub(MAX_ACK_WINDOW as u32))
        {
            // Shotgunned SYNs, a stream picked up after establishment, or
            // stray packets after a close: accepted, but the timeout is
            // not refreshed (a flood must not keep the entry alive).
            if src.max_win < win {
                src.max_win = win;
            }
            if seq_gt(end, src.seqlo) {
                src.seqlo = end;
            }
            let scaled = win << sws;
            if seq_geq(ack.wrapping_add(scaled), dst.seqhi) {
                dst.seqhi = ack.wrapping_add(scaled.max(1));
            }
            if flags & TCP_FIN != 0 && src.state < TcpState::Closing {
                src.state = TcpState::Closing;
            }
            if flags & TCP_RST != 0 {
                src.state = TcpState::TimeWait;
                dst.state = TcpState::TimeWait;
            }
            (Update::Valid, None)
        } else {
            (Update::Invalid, None)
        }
    }

    /// The state `dpctl/dump-conntrack` prints: the further of the two.
    pub fn state(&self) -> TcpState {
        self.peer[0].state.max(self.peer[1].state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(flags: u16, seq: u32, ack: u32, len: u32) -> TcpSegment {
        TcpSegment {
            flags,
            seq,
            ack,
            window: 64000,
            payload_len: len,
            wscale: 0,
        }
    }

    /// A handshake from client seq 1000 to server seq 5000, established.
    fn established() -> TcpConn {
        let (mut c, _) = TcpConn::new(&seg(TCP_SYN, 1000, 0, 0));
        assert_eq!(
            c.update(&seg(TCP_SYN | TCP_ACK, 5000, 1001, 0), true).0,
            Update::Valid
        );
        assert_eq!(
            c.update(&seg(TCP_ACK, 1001, 5001, 0), false).0,
            Update::Valid
        );
        assert_eq!(c.state(), TcpState::Established);
        c
    }

    #[test]
    fn flags_no_stack_sends_are_invalid() {
        assert!(invalid_flags(TCP_SYN | TCP_RST));
        assert!(invalid_flags(TCP_SYN | TCP_FIN));
        assert!(invalid_flags(0));
        assert!(invalid_flags(TCP_FIN));
        assert!(invalid_flags(TCP_RST | TCP_PSH));
        assert!(!invalid_flags(TCP_SYN));
        assert!(!invalid_flags(TCP_ACK | TCP_FIN | TCP_PSH));
        assert!(!valid_new(&seg(TCP_SYN | TCP_ACK, 0, 0, 0)));
        assert!(valid_new(&seg(TCP_ACK, 0, 0, 0)), "picked up midstream");
    }

    #[test]
    fn handshake_data_and_close() {
        let mut c = established();
        let (v, t) = c.update(&seg(TCP_ACK | TCP_PSH, 1001, 5001, 1000), false);
        assert_eq!((v, t), (Update::Valid, Some(Timeout::TcpEstablished)));
        assert_eq!(
            c.update(&seg(TCP_ACK, 5001, 2001, 0), true).0,
            Update::Valid
        );
        assert_eq!(
            c.update(&seg(TCP_ACK | TCP_FIN, 2001, 5001, 0), false).0,
            Update::Valid
        );
        assert_eq!(
            c.update(&seg(TCP_ACK | TCP_FIN, 5001, 2002, 0), true).0,
            Update::Valid
        );
        let (v, t) = c.update(&seg(TCP_ACK, 2002, 5002, 0), false);
        assert_eq!((v, t), (Update::Valid, Some(Timeout::TcpClosed)));
        assert_eq!(c.state().dump_name(), "TIME_WAIT");
        // A new SYN on the closed connection opens a new one.
        assert_eq!(c.update(&seg(TCP_SYN, 90000, 0, 0), false).0, Update::New);
    }

    #[test]
    fn data_beyond_the_window_is_invalid() {
        let mut c = established();
        // The server advertised 64000 bytes: a segment ending past that.
        let far = seg(TCP_ACK, 1001 + 64000, 5001, 100);
        assert_eq!(c.update(&far, false).0, Update::Invalid);
        // Far behind (more than a window back) too.
        let old = seg(TCP_ACK, 1001u32.wrapping_sub(200_000), 5001, 100);
        assert_eq!(c.update(&old, false).0, Update::Invalid);
        // Acking data the client never sent.
        let ack = seg(TCP_ACK, 5001, 1001 + 200_000, 0);
        assert_eq!(c.update(&ack, true).0, Update::Invalid);
        // In the window: fine.
        assert_eq!(
            c.update(&seg(TCP_ACK, 1001, 5001, 1400), false).0,
            Update::Valid
        );
    }

    #[test]
    fn resets_need_an_exact_sequence() {
        let mut c = established();
        assert_eq!(
            c.update(&seg(TCP_RST | TCP_ACK, 1500, 5001, 0), false).0,
            Update::Invalid
        );
        assert_eq!(
            c.update(&seg(TCP_RST | TCP_ACK, 1001, 5001, 0), false).0,
            Update::Valid
        );
        assert_eq!(c.state(), TcpState::TimeWait);
    }

    #[test]
    fn window_scale_is_negotiated_on_the_syns() {
        let mut syn = seg(TCP_SYN, 1000, 0, 0);
        syn.wscale = WSCALE_FLAG | 7;
        let (mut c, _) = TcpConn::new(&syn);
        let mut synack = seg(TCP_SYN | TCP_ACK, 5000, 1001, 0);
        synack.wscale = WSCALE_FLAG | 7;
        assert_eq!(c.update(&synack, true).0, Update::Valid);
        // The client's ack with a 500 window scaled by 128 = 64000 bytes.
        let mut ack = seg(TCP_ACK, 1001, 5001, 0);
        ack.window = 500;
        assert_eq!(c.update(&ack, false).0, Update::Valid);
        // The server may now send up to 64000 bytes past 5001.
        assert_eq!(
            c.update(&seg(TCP_ACK, 5001 + 60000, 1001, 1000), true).0,
            Update::Valid
        );
        assert_eq!(
            c.update(&seg(TCP_ACK, 5001 + 70000, 1001, 1000), true).0,
            Update::Invalid
        );
    }

    #[test]
    fn retransmitted_syn_before_the_reply_stays_new() {
        let (mut c, _) = TcpConn::new(&seg(TCP_SYN, 1000, 0, 0));
        assert_eq!(
            c.update(&seg(TCP_SYN, 1000, 0, 0), false).0,
            Update::ValidNew
        );
    }
}
