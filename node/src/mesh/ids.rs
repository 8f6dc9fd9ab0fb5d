//! [`NodeId`] ↔ [`PeerId`]: a node's id is its ed25519 public key, and its libp2p PeerId
//! carries that same key inline (an identity multihash of the protobuf-encoded key).

use libp2p::PeerId;
use libp2p::identity::{PublicKey, ed25519};
use weft_protocol::NodeId;

/// The multihash code of the identity hash, under which a PeerId carries its key inline.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// The node id of `peer`, when its PeerId holds an ed25519 key (every weft node's does).
pub fn node_id_of(peer: &PeerId) -> Option<NodeId> {
    let multihash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed = key.try_into_ed25519().ok()?;
    Some(NodeId(ed.to_bytes()))
}

/// The PeerId of the node `node`, or `None` when its bytes are no ed25519 public key.
pub fn peer_of(node: &NodeId) -> Option<PeerId> {
    let ed = ed25519::PublicKey::try_from_bytes(&node.0).ok()?;
    Some(PeerId::from_public_key(&PublicKey::from(ed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_and_node_ids_round_trip() {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let peer = keypair.public().to_peer_id();
        let node = node_id_of(&peer).expect("an ed25519 peer");
        assert_eq!(peer_of(&node), Some(peer));
        assert_eq!(node_id_of(&PeerId::random()), None);
    }
}
