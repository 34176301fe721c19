use super::emc::emc_hash;
use super::*;

fn list(actions: OdpActions) -> Arc<OdpActions> {
    Arc::new(actions)
}
use messages::odp::OdpAction;

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

fn mask_src_only() -> Flow {
    Flow {
        in_port: u32::MAX,
        dl_type: u16::MAX,
        nw_src: u32::MAX,
        ..Flow::default()
    }
}

#[test]
fn lookup_finds_megaflow_under_its_mask_only() {
    let mut t = FlowTable::new(100);
    t.create(
        7,
        &Megaflow::new(&flow(0x0a000001, 80), &mask_src_only()),
        &list(vec![OdpAction::Output(2)]),
    )
    .unwrap();
    assert_eq!(t.lookup(&flow(0x0a000001, 443)).map(|e| e.ufid), Some(7));
    assert!(t.lookup(&flow(0x0a000002, 80)).is_none());
    assert_eq!(t.n_masks(), 1);
}

#[test]
fn create_refuses_duplicates_and_overflow() {
    let mut t = FlowTable::new(2);
    let m = mask_src_only();
    t.create(1, &Megaflow::new(&flow(1, 0), &m), &list(vec![]))
        .unwrap();
    assert_eq!(
        t.create(1, &Megaflow::new(&flow(2, 0), &m), &list(vec![])),
        Err(PutError::UfidExists(1))
    );
    assert_eq!(
        t.create(2, &Megaflow::new(&flow(1, 80), &m), &list(vec![])),
        Err(PutError::SameMegaflow(1))
    );
    let exact = Flow {
        tp_dst: u16::MAX,
        nw_proto: u8::MAX,
        ..m
    };
    // A narrower megaflow inside flow 1's may coexist with it.
    t.create(3, &Megaflow::new(&flow(1, 80), &exact), &list(vec![]))
        .unwrap();
    assert_eq!(
        t.create(4, &Megaflow::new(&flow(3, 0), &m), &list(vec![])),
        Err(PutError::Full(2))
    );
}

#[test]
fn modify_keeps_stats_and_kills_emc_entries() {
    let mut t = FlowTable::new(10);
    let mut emc = Emc::new(4, 1);
    let f = flow(5, 22);
    t.create(9, &Megaflow::new(&f, &mask_src_only()), &list(vec![]))
        .unwrap();
    let e = t.lookup(&f).unwrap().clone();
    e.hit(1, 100, 1000, 0x02);
    emc.insert(&f, e);
    t.modify(9, &list(vec![OdpAction::Output(3)]), false)
        .unwrap();
    assert!(emc.lookup(&f).is_none());
    let now = t.get(9).unwrap();
    assert_eq!(*now.actions, vec![OdpAction::Output(3)]);
    assert_eq!(now.stats().n_packets, 1);
    assert_eq!(now.stats().used_ms, Some(1000));
    t.modify(9, &list(vec![]), true).unwrap();
    assert_eq!(t.get(9).unwrap().stats(), FlowStats::default());
}

#[test]
fn delete_removes_empty_subtables() {
    let mut t = FlowTable::new(10);
    t.create(
        1,
        &Megaflow::new(&flow(1, 0), &mask_src_only()),
        &list(vec![]),
    )
    .unwrap();
    assert!(t.delete(1).is_some());
    assert!(t.delete(1).is_none());
    assert_eq!(t.n_masks(), 0);
    assert!(t.lookup(&flow(1, 0)).is_none());
}

#[test]
fn many_masks_survive_deletes_and_id_reuse() {
    let mut t = FlowTable::new(100);
    let masks: Vec<Flow> = (0..4)
        .map(|i| Flow {
            in_port: u32::MAX,
            nw_src: u32::MAX << (8 * i),
            ..Flow::default()
        })
        .collect();
    for (i, m) in masks.iter().enumerate() {
        t.create(
            i as u128,
            &Megaflow::new(&flow(((10 + i as u32) << 24) | i as u32, 0), m),
            &list(vec![]),
        )
        .unwrap();
    }
    assert_eq!(t.n_masks(), 4);
    assert!(t.delete(0).is_some());
    assert_eq!(t.n_masks(), 3);
    for i in 1..4u32 {
        assert_eq!(
            t.lookup(&flow(((10 + i) << 24) | i, 0)).map(|e| e.ufid),
            Some(i as u128)
        );
    }
    t.create(
        9,
        &Megaflow::new(&flow(0x2000_0000, 0), &masks[3]),
        &list(vec![]),
    )
    .unwrap();
    assert_eq!(t.n_masks(), 3);
    assert!(t.delete(3).is_some());
    assert_eq!(t.lookup(&flow(0x2000_0001, 7)).map(|e| e.ufid), Some(9));
}

#[test]
fn burst_lookup_agrees_with_lookup() {
    let mut t = FlowTable::new(100);
    let by_src = Flow {
        in_port: u32::MAX,
        dl_type: u16::MAX,
        nw_src: 0xff00_0000,
        ..Flow::default()
    };
    let by_port = Flow {
        tp_dst: u16::MAX,
        ..by_src
    };
    t.create(
        1,
        &Megaflow::new(&flow(0x0a00_0000, 0), &by_src),
        &list(vec![]),
    )
    .unwrap();
    t.create(
        2,
        &Megaflow::new(&flow(0x0b00_0000, 80), &by_port),
        &list(vec![]),
    )
    .unwrap();
    let keys = [
        flow(0x0a01_0203, 22),
        flow(0x0b00_0001, 80),
        flow(0x0b00_0001, 81),
        flow(0x0c00_0001, 80),
    ];
    let mut found = vec![None; keys.len()];
    t.lookup_burst(&keys, &mut found);
    let burst: Vec<Option<u128>> = found.iter().map(|e| e.as_ref().map(|e| e.ufid)).collect();
    let one_by_one: Vec<Option<u128>> = keys.iter().map(|k| t.lookup(k).map(|e| e.ufid)).collect();
    assert_eq!(burst, one_by_one);
    assert_eq!(burst, vec![Some(1), Some(2), None, None]);
}

/// Random puts and deletes over masks that share fewer and fewer
/// fields (so the first stage narrows and is rebuilt): a lookup finds a
/// megaflow exactly when one matches, and what it finds matches.
#[test]
fn lookups_agree_with_a_linear_scan_through_narrowing_and_deletes() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let masks: Vec<Flow> = (0..6u32)
        .map(|i| Flow {
            in_port: u32::MAX,
            dl_type: if i < 3 { u16::MAX } else { 0 },
            nw_src: u32::MAX << (4 * i),
            tp_dst: if i % 2 == 0 { u16::MAX } else { 0 },
            ..Flow::default()
        })
        .collect();
    let random_flow = |r: u64| Flow {
        in_port: (r & 3) as u32,
        dl_type: if r & 4 == 0 { 0x0800 } else { 0x86dd },
        nw_src: ((r >> 8) & 0xff) as u32,
        tp_dst: ((r >> 16) & 3) as u16,
        ..Flow::default()
    };
    let mut t = FlowTable::new(10_000);
    let mut installed: Vec<(Ufid, Flow, Flow)> = Vec::new();
    for round in 0..3000u64 {
        let r = next();
        if r % 4 == 0 && !installed.is_empty() {
            let (ufid, _, _) = installed.swap_remove((r >> 8) as usize % installed.len());
            assert!(t.delete(ufid).is_some());
        } else {
            // Narrower masks come into play as the rounds go by.
            let m = masks[(r >> 24) as usize % (1 + (round as usize / 500).min(5))];
            let key = random_flow(next()).masked(&m);
            if t.create(round as Ufid, &Megaflow::new(&key, &m), &list(vec![]))
                .is_ok()
            {
                installed.push((round as Ufid, key, m));
            }
        }
        let probe = random_flow(next());
        let expected = installed.iter().any(|(_, k, m)| probe.masked(m) == *k);
        match t.lookup(&probe) {
            Some(e) => {
                let mask = t.subtable(e.subtable).shape.mask;
                assert_eq!(
                    probe.masked(&mask),
                    e.key(&t.subtable(e.subtable).shape),
                    "round {round}"
                )
            }
            None => assert!(!expected, "round {round}: a matching megaflow was missed"),
        }
    }
    assert_eq!(t.len(), installed.len());
}

#[test]
fn emc_inserts_by_draw_and_drops_dead_entries() {
    let mut t = FlowTable::new(10);
    let f = flow(7, 80);
    t.create(1, &Megaflow::new(&f, &mask_src_only()), &list(vec![]))
        .unwrap();
    let e = t.lookup(&f).unwrap().clone();

    // Off: nothing is cached.
    let mut off = Emc::new(0, 100);
    off.maybe_insert(&f, &e);
    assert!(off.lookup(&f).is_none());

    // One in 100: a flow that keeps hitting gets in after a while.
    let mut sampled = Emc::new(64, 100);
    let mut draws = 0;
    while sampled.lookup(&f).is_none() {
        sampled.maybe_insert(&f, &e);
        draws += 1;
        assert!(draws < 10_000, "never inserted");
    }
    assert!(draws > 1, "inserted at the first draw of one in 100");

    // Always: every hit is cached.
    let mut always = Emc::new(1024, 1);
    let g = flow(8, 80);
    t.create(2, &Megaflow::new(&g, &mask_src_only()), &list(vec![]))
        .unwrap();
    let e2 = t.lookup(&g).unwrap().clone();
    always.maybe_insert(&f, &e);
    always.maybe_insert(&g, &e2);
    assert_eq!(always.lookup(&f).map(|x| x.ufid), Some(1));
    assert_eq!(always.lookup(&g).map(|x| x.ufid), Some(2));
    // A deleted megaflow's entry is dropped when met.
    t.delete(1);
    assert!(always.lookup(&f).is_none());
}

#[test]
fn emc_tells_apart_keys_its_hash_does_not() {
    // TCP flags are not hashed: the two keys share their slots, and
    // the cache compares whole keys.
    let syn = Flow {
        tcp_flags: 0x002,
        ..flow(7, 80)
    };
    let ack = Flow {
        tcp_flags: 0x010,
        ..syn
    };
    assert_eq!(emc_hash(&syn), emc_hash(&ack));
    assert_ne!(emc_hash(&syn), emc_hash(&flow(8, 80)));
    let mut t = FlowTable::new(10);
    t.create(1, &Megaflow::new(&syn, &syn), &list(vec![]))
        .unwrap();
    t.create(2, &Megaflow::new(&ack, &ack), &list(vec![]))
        .unwrap();
    // A cache where the hash's two candidate slots (its low bits, and its
    // bits from 32 on) differ, so that both keys fit.
    let h = emc_hash(&syn);
    let size = (6..24)
        .map(|bits| 1usize << bits)
        .find(|n| (h as usize) & (n - 1) != ((h >> 32) as usize) & (n - 1))
        .unwrap();
    let mut emc = Emc::new(size, 1);
    emc.maybe_insert(&syn, &t.lookup(&syn).unwrap().clone());
    assert!(emc.lookup(&ack).is_none(), "another key in the slot");
    emc.maybe_insert(&ack, &t.lookup(&ack).unwrap().clone());
    assert_eq!(emc.lookup(&syn).map(|e| e.ufid), Some(1));
    assert_eq!(emc.lookup(&ack).map(|e| e.ufid), Some(2));
}

#[test]
fn equal_action_lists_are_stored_once_and_leave_with_their_last_flow() {
    let mut t = FlowTable::new(10);
    // One list as a handler shares it, and an equal one sent apart.
    let sent = list(vec![OdpAction::Output(2)]);
    let equal = list(vec![OdpAction::Output(2)]);
    t.create(1, &Megaflow::new(&flow(1, 0), &mask_src_only()), &sent)
        .unwrap();
    t.create(2, &Megaflow::new(&flow(2, 0), &mask_src_only()), &equal)
        .unwrap();
    t.create(
        3,
        &Megaflow::new(&flow(3, 0), &mask_src_only()),
        &list(vec![]),
    )
    .unwrap();
    let (a, b) = (t.get(1).unwrap(), t.get(2).unwrap());
    assert!(Arc::ptr_eq(&a.actions, &b.actions));
    // The pool's own copy: the sender's reference count is not shared
    // by the megaflows (the pool pins the sender's list once).
    assert!(!Arc::ptr_eq(&a.actions, &sent));
    assert_eq!(Arc::strong_count(&sent), 2);
    assert_eq!(t.actions.lists.len(), 2);
    // A modify to other actions moves flow 2 off the shared list.
    t.modify(2, &list(vec![OdpAction::Output(4)]), false)
        .unwrap();
    assert_eq!(*t.get(2).unwrap().actions, vec![OdpAction::Output(4)]);
    assert_eq!(t.actions.lists.len(), 3);
    t.delete(1);
    t.delete(2);
    t.delete(3);
    assert!(t.actions.lists.is_empty());
    assert!(t.actions.senders.is_empty());
    assert_eq!(Arc::strong_count(&sent), 1);
}
