//! The Linux openvswitch module's generic netlink families (`ovs_datapath`, `ovs_vport`, `ovs_flow`, `ovs_packet`) as typed messages, without I/O.
