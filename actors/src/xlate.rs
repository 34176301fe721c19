//! Translation of OpenFlow actions into datapath actions and a megaflow mask.
