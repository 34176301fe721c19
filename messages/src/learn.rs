//! The `learn` action (OVS's `lib/learn.c`): a recipe for a rule built
//! from the packet being translated. Pure: [`Learn::execute`] gives the
//! rule for one flow, [`Learn::mask`] the bits of the flow it reads.

use crate::field::Field;
use crate::flow::{Flow, FlowWildcards};
use crate::ofp::{flow_flags, port, Instructions, Match, OfAction, Rule, DEFAULT_PRIORITY};

/// Bits `ofs..ofs + n_bits` of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Subfield {
    pub field: Field,
    pub ofs: u8,
    pub n_bits: u8,
}

impl Subfield {
    /// The subfield's bits in place.
    pub fn mask(&self) -> u128 {
        ones(self.n_bits) << self.ofs
    }

    /// The subfield's value in `flow`, right-aligned.
    pub fn read(&self, flow: &Flow) -> u128 {
        (self.field.get(flow) >> self.ofs) & ones(self.n_bits)
    }

    /// Writes `value` (right-aligned) into the subfield of `flow`.
    pub fn write(&self, flow: &mut Flow, value: u128) {
        self.field
            .set_masked(flow, (value & ones(self.n_bits)) << self.ofs, self.mask());
    }
}

fn ones(n: u8) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

/// Where a spec's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LearnSrc {
    /// Bits of the packet's flow.
    Field(Subfield),
    /// A constant, right-aligned.
    Immediate(u128),
}

/// What a spec does with its value in the learned rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LearnDst {
    /// The learned rule matches the value in these bits.
    Match(Subfield),
    /// The learned rule loads the value into these bits (`load:`).
    Load(Subfield),
    /// The learned rule outputs to the port the value names (`output:`).
    Output,
}

/// One `learn` argument that shapes the learned rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LearnSpec {
    pub src: LearnSrc,
    pub dst: LearnDst,
    /// Width of the value.
    pub n_bits: u8,
}

/// The `learn` action.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Learn {
    pub table: u8,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    pub cookie: u64,
    pub send_flow_rem: bool,
    /// Deleting the last rule with this learn deletes the rules it learned
    /// (those of `table` with `cookie`).
    pub delete_learned: bool,
    /// At most this many rules with `cookie` in `table` (0: no limit).
    pub limit: u32,
    /// A one-bit subfield set to 1 when the rule is learned, 0 when the
    /// limit prevented it.
    pub result_dst: Option<Subfield>,
    pub specs: Vec<LearnSpec>,
}

/// A rule a `learn` action built for one packet, on its way to the
/// rule-table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LearnedRule {
    pub rule: Rule,
    /// The learn's `limit`: the rule-table adds the rule only while fewer
    /// rules than this have its table and cookie (0: no limit).
    pub limit: u32,
}

impl Default for Learn {
    fn default() -> Self {
        Learn {
            table: 1,
            priority: DEFAULT_PRIORITY,
            idle_timeout: 0,
            hard_timeout: 0,
            fin_idle_timeout: 0,
            fin_hard_timeout: 0,
            cookie: 0,
            send_flow_rem: false,
            delete_learned: false,
            limit: 0,
            result_dst: None,
            specs: Vec::new(),
        }
    }
}

impl Learn {
    /// OVS's `learn_execute`: the rule this action learns from `flow`.
    pub fn execute(&self, flow: &Flow) -> Rule {
        let mut matches = Match::catchall();
        let mut apply = Vec::new();
        if self.fin_idle_timeout != 0 || self.fin_hard_timeout != 0 {
            apply.push(OfAction::FinTimeout {
                idle_timeout: self.fin_idle_timeout,
                hard_timeout: self.fin_hard_timeout,
            });
        }
        for spec in &self.specs {
            let value = match spec.src {
                LearnSrc::Field(sf) => sf.read(flow),
                LearnSrc::Immediate(v) => v,
            };
            match spec.dst {
                LearnDst::Match(sf) => {
                    sf.field.set_masked(&mut matches.mask, sf.mask(), sf.mask());
                    sf.write(&mut matches.flow, value);
                }
                LearnDst::Load(sf) => apply.push(OfAction::Load {
                    field: sf.field,
                    value: (value & ones(sf.n_bits)) << sf.ofs,
                    mask: sf.mask(),
                }),
                LearnDst::Output => {
                    // An OpenFlow 1.0 port number; reserved ports other
                    // than these are not output to.
                    if spec.n_bits <= 16 || value >> 16 == 0 {
                        let p = value as u16 as u32;
                        let p = if p >= 0xff00 { p | 0xffff_0000 } else { p };
                        if p < port::MAX
                            || matches!(p, port::IN_PORT | port::FLOOD | port::LOCAL | port::ALL)
                        {
                            apply.push(OfAction::Output {
                                port: p,
                                max_len: 0,
                            });
                        }
                    }
                }
            }
        }
        Rule {
            table: self.table,
            priority: self.priority,
            cookie: self.cookie,
            idle_timeout: self.idle_timeout,
            hard_timeout: self.hard_timeout,
            flags: if self.send_flow_rem {
                flow_flags::SEND_FLOW_REM
            } else {
                0
            },
            matches,
            instructions: Instructions {
                apply,
                ..Instructions::default()
            },
        }
    }

    /// OVS's `learn_mask`: un-wildcards every bit the specs read from the
    /// flow.
    pub fn mask(&self, wc: &mut FlowWildcards) {
        for spec in &self.specs {
            if let LearnSrc::Field(sf) = spec.src {
                sf.field.set_masked(wc, sf.mask(), sf.mask());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sf(field: Field, ofs: u8, n_bits: u8) -> Subfield {
        Subfield { field, ofs, n_bits }
    }

    /// The advanced tutorial's MAC learning:
    /// `learn(table=10,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],
    /// load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15])`.
    fn mac_learning() -> Learn {
        Learn {
            table: 10,
            specs: vec![
                LearnSpec {
                    src: LearnSrc::Field(sf(Field::VlanTci, 0, 12)),
                    dst: LearnDst::Match(sf(Field::VlanTci, 0, 12)),
                    n_bits: 12,
                },
                LearnSpec {
                    src: LearnSrc::Field(sf(Field::EthSrc, 0, 48)),
                    dst: LearnDst::Match(sf(Field::EthDst, 0, 48)),
                    n_bits: 48,
                },
                LearnSpec {
                    src: LearnSrc::Field(sf(Field::InPort, 0, 16)),
                    dst: LearnDst::Load(sf(Field::Reg(0), 0, 16)),
                    n_bits: 16,
                },
            ],
            ..Learn::default()
        }
    }

    #[test]
    fn execute_builds_the_rule_from_the_flow() {
        let mut flow = Flow {
            in_port: 3,
            dl_src: [0x50, 0, 0, 0, 0, 1],
            ..Flow::default()
        };
        flow.vlans[0].tci = 0x1000 | 20;
        let r = mac_learning().execute(&flow);
        assert_eq!(r.table, 10);
        assert_eq!(r.priority, DEFAULT_PRIORITY);
        assert_eq!(r.matches.mask.vlans[0].tci, 0x0fff);
        assert_eq!(r.matches.flow.vlans[0].tci, 20);
        assert_eq!(r.matches.flow.dl_dst, [0x50, 0, 0, 0, 0, 1]);
        assert_eq!(r.matches.mask.dl_dst, [0xff; 6]);
        assert_eq!(
            r.instructions.apply,
            vec![OfAction::Load {
                field: Field::Reg(0),
                value: 3,
                mask: 0xffff
            }]
        );
    }

    #[test]
    fn mask_unwildcards_the_sources_only() {
        let mut wc = Flow::default();
        mac_learning().mask(&mut wc);
        assert_eq!(wc.vlans[0].tci, 0x0fff);
        assert_eq!(wc.dl_src, [0xff; 6]);
        assert_eq!(wc.dl_dst, [0; 6]);
        assert_eq!(wc.in_port, 0xffff);
        assert_eq!(wc.regs[0], 0);
    }

    #[test]
    fn output_spec_and_fin_timeouts() {
        let learn = Learn {
            fin_idle_timeout: 5,
            specs: vec![LearnSpec {
                src: LearnSrc::Field(sf(Field::InPort, 0, 16)),
                dst: LearnDst::Output,
                n_bits: 16,
            }],
            ..Learn::default()
        };
        let r = learn.execute(&Flow {
            in_port: 7,
            ..Flow::default()
        });
        assert_eq!(
            r.instructions.apply,
            vec![
                OfAction::FinTimeout {
                    idle_timeout: 5,
                    hard_timeout: 0
                },
                OfAction::Output {
                    port: 7,
                    max_len: 0
                }
            ]
        );
    }
}
