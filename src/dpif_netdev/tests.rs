use super::*;
use messages::dpif::Execute;
use messages::odp::PortsKey;
use messages::Megaflow;

/// An IPv4/TCP frame from 10.0.0.1:1000 to 10.0.0.2:80.
fn tcp_frame() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.extend_from_slice(&[
        0x03, 0xe8, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

#[test]
fn miss_upcall_put_then_hit_with_stats() {
    let dp = Netdev::new(NetdevConfig::default());
    let sink = dp
        .port_add(&PortSpec {
            name: "sink".into(),
            kind: PortKind::Replay {
                path: "/nonexistent".into(),
            },
            number: Some(2),
        })
        .unwrap();
    let frames = vec![ReplayFrame {
        in_port: Some(1),
        frame: tcp_frame(),
    }];
    dp.inject(&frames, 0);
    let mut ups = Vec::new();
    dp.recv_upcalls(0, 64, Duration::ZERO, &mut ups).unwrap();
    assert_eq!(ups.len(), 1);
    let up = ups.pop().unwrap();
    assert_eq!(
        (up.key.in_port, up.key.tp_dst, up.key.nw_dst),
        (1, 80, 0x0a00_0002)
    );
    // The ufid a reader gets is the key's.
    assert_eq!(up.ufid, key_ufid(&up.key));
    let mask = Flow {
        in_port: u32::MAX,
        dl_type: u16::MAX,
        ..Flow::default()
    };
    let actions = vec![OdpAction::Output(sink)];
    let results = dp.operate(&mut [
        DpifOp::put(FlowPut {
            ufid: 42,
            megaflow: Megaflow::new(&up.key, &mask),
            actions: actions.clone().into(),
            mode: PutMode::Create,
            reset_stats: false,
        }),
        DpifOp::Execute(Box::new(Execute {
            packet: up.packet,
            metadata: PacketMetadata::of(&up.key),
            actions: actions.into(),
            mru: 0,
        })),
    ]);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    dp.inject(&frames, 0);
    dp.inject(&frames, 0);
    let s = dp.stats();
    assert_eq!((s.n_hit, s.n_missed, s.n_lost, s.n_flows), (2, 1, 0, 1));
    assert_eq!(dp.tx_packets()[&sink], 3);
    dp.operate(&mut [DpifOp::Execute(Box::new(Execute {
        packet: tcp_frame(),
        metadata: PacketMetadata::of(&up.key),
        actions: vec![OdpAction::Output(99), OdpAction::PopVlan].into(),
        mru: 0,
    }))]);
    assert_eq!(dp.tx_drops(), (1, 1));
    let dump = dp.flow_dump().unwrap();
    assert_eq!(dump[0].stats.n_packets, 2);
    assert_eq!(dump[0].stats.n_bytes, 2 * 54);
    assert_eq!(dump[0].stats.tcp_flags, 0x02);
    assert!(dp.operate(&mut [DpifOp::FlowDel { ufid: 42 }])[0].is_ok());
    assert!(dp.operate(&mut [DpifOp::FlowDel { ufid: 42 }])[0].is_err());
    dp.inject(&frames, 0);
    assert_eq!(dp.stats().n_missed, 2);
}

#[test]
fn userspace_actions_send_up_the_key_as_the_actions_left_it() {
    let dp = Netdev::new(NetdevConfig::default());
    let userspace = |tag: u8| OdpAction::Userspace {
        pid: 0,
        userdata: vec![tag],
    };
    let metadata = PacketMetadata {
        in_port: 7,
        pkt_mark: 1,
        ..PacketMetadata::default()
    };
    let ports = |tp_dst| PortsKey {
        src: 0,
        dst: tp_dst,
    };
    dp.operate(&mut [DpifOp::Execute(Box::new(Execute {
        packet: tcp_frame(),
        metadata,
        actions: vec![
            userspace(1),
            OdpAction::SetMasked(SetHeader::SkbMark {
                key: 0x50,
                mask: 0xf0,
            }),
            OdpAction::SetMasked(SetHeader::Tcp {
                key: ports(443),
                mask: ports(0xffff),
            }),
            userspace(2),
        ]
        .into(),
        mru: 0,
    }))]);
    let mut ups = Vec::new();
    dp.recv_upcalls(0, 64, Duration::ZERO, &mut ups).unwrap();
    let seen: Vec<_> = ups
        .iter()
        .map(|u| (u.kind.clone(), u.key.in_port, u.key.pkt_mark, u.key.tp_dst))
        .collect();
    let action = |tag| UpcallKind::Action {
        userdata: vec![tag],
    };
    assert_eq!(
        seen,
        [(action(1), 7, 1, 80), (action(2), 7, 0x51, 443)],
        "parsed from the frame with the metadata as it stood"
    );
    assert_eq!(ups[1].key.nw_dst, 0x0a00_0002);

    // A hit runs the same actions knowing the frame's key.
    let mut key = flow_extract(&tcp_frame(), &metadata.to_flow());
    key.pkt_mark = 1;
    let all = Flow {
        in_port: u32::MAX,
        ..Flow::default()
    };
    let actions: Vec<OdpAction> = vec![
        userspace(3),
        OdpAction::SetMasked(SetHeader::SkbMark {
            key: 0x50,
            mask: 0xf0,
        }),
        userspace(4),
    ];
    dp.operate(&mut [DpifOp::put(FlowPut {
        ufid: 1,
        megaflow: Megaflow::new(&key, &all),
        actions: actions.into(),
        mode: PutMode::Create,
        reset_stats: false,
    })]);
    dp.inject(
        &[ReplayFrame {
            in_port: Some(7),
            frame: tcp_frame(),
        }],
        0,
    );
    ups.clear();
    dp.recv_upcalls(0, 64, Duration::ZERO, &mut ups).unwrap();
    let seen: Vec<_> = ups
        .iter()
        .map(|u| (u.kind.clone(), u.key.pkt_mark, u.key.tp_dst))
        .collect();
    assert_eq!(seen, [(action(3), 0, 80), (action(4), 0x50, 80)]);
}

#[test]
fn a_bursts_hits_are_credited_to_their_megaflows() {
    let dp = Netdev::new(NetdevConfig::default());
    let by_port = Flow {
        in_port: u32::MAX,
        ..Flow::default()
    };
    for port in [1, 2] {
        let key = Flow {
            in_port: port,
            ..Flow::default()
        };
        dp.operate(&mut [DpifOp::put(FlowPut {
            ufid: port as Ufid,
            megaflow: Megaflow::new(&key, &by_port),
            actions: Arc::new(OdpActions::new()),
            mode: PutMode::Create,
            reset_stats: false,
        })]);
    }
    let frame = |port, len| ReplayFrame {
        in_port: Some(port),
        frame: {
            let mut f = tcp_frame();
            f.resize(len, 0);
            f
        },
    };
    // Runs of one flow, broken by another, in one burst.
    dp.inject(&[frame(1, 60), frame(1, 70), frame(2, 80), frame(1, 90)], 0);
    let stats: BTreeMap<Ufid, (u64, u64)> = dp
        .flow_dump()
        .unwrap()
        .iter()
        .map(|f| (f.ufid, (f.stats.n_packets, f.stats.n_bytes)))
        .collect();
    assert_eq!(stats[&1], (3, 220));
    assert_eq!(stats[&2], (1, 80));
    assert_eq!(dp.stats().n_hit, 4);
}

#[test]
fn full_upcall_queue_loses_and_counts() {
    let dp = Netdev::new(NetdevConfig {
        upcall_queue_len: 1,
        ..NetdevConfig::default()
    });
    let mut rx = RxState::new(Emc::new(4, 1));
    let mut burst: Burst = (0..3).map(|_| (1, tcp_frame())).collect();
    dp.core.receive(&mut burst, &mut rx);
    dp.core.queue_misses(&mut rx, false, &|| false);
    let s = dp.stats();
    assert_eq!((s.n_missed, s.n_lost), (3, 2));
}

#[test]
fn a_receive_loop_holding_misses_does_not_wait_for_input() {
    let dp = Netdev::new(NetdevConfig::default());
    let mut rx = dp.core.rx_state();
    assert!(may_wait(&Vec::new(), &rx));
    let mut burst: Burst = (0..BURST).map(|_| (1, tcp_frame())).collect();
    dp.core.receive(&mut burst, &mut rx);
    dp.core.queue_misses(&mut rx, true, &|| false);
    assert_eq!(dp.n_queued_upcalls(), 0, "held for more input");
    assert!(!may_wait(&Vec::new(), &rx));
    // No frame came: the empty burst queues them.
    dp.core.receive(&mut Vec::new(), &mut rx);
    dp.core.queue_misses(&mut rx, false, &|| false);
    assert_eq!(dp.n_queued_upcalls(), BURST);
    assert!(may_wait(&Vec::new(), &rx));
}

#[test]
fn misses_wait_for_the_next_input_burst_only_while_it_fits() {
    let dp = Netdev::new(NetdevConfig::default());
    let mut rx = RxState::new(Emc::new(4, 1));
    let mut burst: Burst = (0..BURST).map(|_| (1, tcp_frame())).collect();
    dp.core.receive(&mut burst, &mut rx);
    dp.core.queue_misses(&mut rx, true, &|| false);
    assert_eq!(dp.n_queued_upcalls(), 0, "held for the next input burst");
    let mut burst: Burst = (0..BURST).map(|_| (1, tcp_frame())).collect();
    dp.core.receive(&mut burst, &mut rx);
    dp.core.queue_misses(&mut rx, true, &|| false);
    assert_eq!(dp.n_queued_upcalls(), 2 * BURST, "a third would not fit");
    let mut burst: Burst = vec![(1, tcp_frame())];
    dp.core.receive(&mut burst, &mut rx);
    dp.core.queue_misses(&mut rx, false, &|| false);
    assert_eq!(dp.n_queued_upcalls(), 2 * BURST + 1, "no input behind it");
    assert_eq!(dp.stats().n_missed, 2 * BURST as u64 + 1);
    let mut out = Vec::new();
    dp.recv_upcalls(0, UPCALL_BURST, Duration::ZERO, &mut out)
        .unwrap();
    assert_eq!(out.len(), 2 * BURST, "one upcall burst, whole");
}

#[test]
fn clone_check_pkt_len_and_trunc_run_as_the_datapath_runs_them() {
    let dp = Netdev::new(NetdevConfig::default());
    let userspace = |tag: u8| OdpAction::Userspace {
        pid: 0,
        userdata: vec![tag],
    };
    let ports = |tp_dst| PortsKey {
        src: 0,
        dst: tp_dst,
    };
    let set_dst = |p| {
        OdpAction::SetMasked(SetHeader::Tcp {
            key: ports(p),
            mask: ports(0xffff),
        })
    };
    let run = |actions: Vec<OdpAction>| {
        dp.operate(&mut [DpifOp::Execute(Box::new(Execute {
            packet: tcp_frame(),
            metadata: PacketMetadata {
                in_port: 7,
                ..PacketMetadata::default()
            },
            actions: actions.into(),
            mru: 0,
        }))]);
        let mut ups = Vec::new();
        dp.recv_upcalls(0, 64, Duration::ZERO, &mut ups).unwrap();
        ups.iter()
            .map(|u| {
                let UpcallKind::Action { userdata } = &u.kind else {
                    panic!("not an action upcall: {:?}", u.kind)
                };
                (userdata[0], u.packet.len(), u.key.tp_dst)
            })
            .collect::<Vec<_>>()
    };
    // A clone's rewrites stay in the clone.
    assert_eq!(
        run(vec![
            OdpAction::Clone(vec![set_dst(443), userspace(1)]),
            userspace(2)
        ]),
        [(1, 54, 443), (2, 54, 80)]
    );
    // The frame is 54 bytes: longer than 53, not longer than 54.
    let check = |size| OdpAction::CheckPktLen {
        pkt_len: size,
        gt: vec![userspace(1)],
        le: vec![set_dst(22), userspace(2)],
    };
    assert_eq!(run(vec![check(53)]), [(1, 54, 80)]);
    assert_eq!(
        run(vec![check(54), userspace(3)]),
        [(2, 54, 22), (3, 54, 80)]
    );
    // trunc cuts what the next output sends, and only that.
    assert_eq!(
        run(vec![OdpAction::Trunc(20), userspace(1), userspace(2)]),
        [(1, 20, 80), (2, 54, 80)]
    );
}

/// A tunnel vport counts what it receives as every port does: packets,
/// and the bytes of their inner frames.
#[test]
fn a_tunnel_vports_receive_loop_counts_packets_and_bytes() {
    // A UDP port free on loopback now (the vport binds it on all
    // addresses of the test's namespace).
    let udp_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dp = Netdev::new(NetdevConfig::default());
    let vport = dp
        .port_add(&PortSpec {
            name: "vxlan_sys_test".into(),
            kind: PortKind::Tunnel {
                kind: messages::tunnel::TunnelKind::Vxlan,
                udp_port,
                vxlan_gbp: false,
            },
            number: None,
        })
        .unwrap();
    // VXLAN: flags with the VNI present, VNI 5; then the inner frame.
    let mut datagram = vec![0x08, 0, 0, 0, 0, 0, 5, 0];
    datagram.extend_from_slice(&tcp_frame());
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..3 {
        sender.send_to(&datagram, ("127.0.0.1", udp_port)).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let stats = loop {
        let s = dp
            .port_stats()
            .into_iter()
            .find(|s| s.number == vport)
            .unwrap();
        if s.rx_packets >= 3 || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(stats.rx_packets, 3);
    assert_eq!(stats.rx_bytes, 3 * tcp_frame().len() as u64);
    // The packets went up as misses with their tunnel.
    let mut ups = Vec::new();
    dp.recv_upcalls(0, 64, Duration::from_secs(1), &mut ups)
        .unwrap();
    assert!(!ups.is_empty());
    assert_eq!((ups[0].key.tun_id, ups[0].key.tun_dst), (5, 0x7f00_0001));
}

/// A fragment held by `ct` whose list never completes, and no later packet
/// through `ct` to send it on: the datapath's cleaner purges it 25 s
/// later (15 s to expire, 10 s more), counted in `ipf-get-status`.
#[test]
fn a_lone_fragment_nothing_sends_on_is_purged_by_the_cleaner() {
    let dp = Netdev::new(NetdevConfig::default());
    // The first of several fragments of a UDP datagram: 1480 bytes of data.
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let mut ip = vec![
        0x45, 0, 0x05, 0xdc, 0x12, 0x34, 0x20, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    let sum = messages::wire::checksum::internet(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x13, 0x88, 0x17, 0x70, 0x0f, 0xa0, 0, 0]);
    f.resize(14 + 1500, 7);
    let md = PacketMetadata {
        in_port: 1,
        ..PacketMetadata::default()
    };
    dp.operate(&mut [DpifOp::Execute(Box::new(Execute {
        packet: f,
        metadata: md,
        actions: vec![
            OdpAction::Ct(messages::odp::CtAction::default()),
            OdpAction::Output(2),
        ]
        .into(),
        mru: 0,
    }))]);
    let ipf = &dp.conntrack().fragments;
    assert_eq!(ipf.held(), 1, "{}", ipf.status());
    let start = std::time::Instant::now();
    while ipf.v4.purged.load(Ordering::Relaxed) == 0 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = ipf.status();
    assert!(status.contains("        v4 frags purged: 1\n"), "{status}");
    assert!(status.contains("        num frag: 0\n"), "{status}");
    assert!(status.contains("        v4 frags expired: 0\n"), "{status}");
}
