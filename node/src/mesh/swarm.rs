//! The swarm task: the one task that owns the libp2p [`Swarm`], and everything that needs it.
//!
//! It runs the connection life cycle (dials, admission deadlines, blocks), discovery (static
//! peers with backoff, mDNS), gossip (publish, validation), and turns what happens into
//! [`MeshEvent`]s. The stream protocols (admission, rpc, blobs) run in their own tasks and
//! talk to it through [`Command`]s.
//!
//! Duplicate connections are avoided by construction: a peer is dialed only when we are
//! neither connected to it nor dialing it, and when mDNS shows two nodes to each other only
//! the one with the lower PeerId dials at once; the other dials after [`MDNS_DIAL_DELAY`] if
//! still nothing connected them (a one-way reachable LAN).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::{AsyncReadExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, allow_block_list, gossipsub, identify, mdns, ping,
};
use tokio::sync::{mpsc, oneshot, watch};
use weft_protocol::wire::{self, GossipMessage};
use weft_store::Store;

use super::bulk_tls::BulkTls;
use super::config::{self, ADMISSION_DEADLINE, BLOCK_DURATION, MeshConfig, UNADMITTED_SCORE};
use super::error::MeshError;
use super::events::{Command, MeshEvent};
use super::handle::{Mesh, ShutdownGuard, topic_name};
use super::state::{Counters, PeerEntry, Shared, State};
use super::team::AdmissionKey;
use super::{admit, blob, bulk, rpc};

/// How long the higher of two PeerIds that discovered each other by mDNS waits before dialing.
pub(crate) const MDNS_DIAL_DELAY: Duration = Duration::from_secs(3);
/// The first and the largest delay between dials of a static peer.
const STATIC_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
/// How often the swarm task checks its timers.
const TICK: Duration = Duration::from_millis(250);
/// How long a gossip message that found no peer is kept for the next admitted peer.
const PENDING_GOSSIP_TTL: Duration = Duration::from_secs(10);
/// The most gossip messages kept for the next admitted peer.
const MAX_PENDING_GOSSIP: usize = 64;
/// The capacity of the event channel to the daemon.
const EVENT_CAPACITY: usize = 4096;
/// How long [`start`] waits for the listeners to come up.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a stopping mesh keeps polling the swarm so that its connections' close frames
/// go out: peers then see this node leave at once, rather than after QUIC's idle timeout,
/// and admit a restarted daemon of the same identity at once (until then a peer counts it
/// as admitted on the old connection and refuses a new admission).
const CLOSE_LINGER: Duration = Duration::from_millis(500);

/// The behaviours the swarm runs.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    streams: libp2p_stream::Behaviour,
}

/// Starts a mesh node: listens, subscribes to the team's topic, dials the static peers, and
/// runs until [`Mesh::shutdown`] or until the last handle is dropped.
pub async fn start(
    config: MeshConfig,
    store: Store,
) -> Result<(Mesh, mpsc::Receiver<MeshEvent>), MeshError> {
    let local = config.keypair.public().to_peer_id();
    let team_id = config.team.team_id();
    let mdns_enabled = config.mdns;
    let mut swarm = SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_quic_config(config::quic_config)
        .with_behaviour(
            |key| -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
                let mut gossipsub = gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    config::gossipsub_config()?,
                )?;
                let (params, thresholds) = config::gossipsub_scoring();
                gossipsub.with_peer_score(params, thresholds)?;
                let mdns = if mdns_enabled {
                    Some(mdns::tokio::Behaviour::new(
                        mdns::Config::default(),
                        key.public().to_peer_id(),
                    )?)
                } else {
                    None
                };
                Ok(Behaviour {
                    blocked: Default::default(),
                    identify: identify::Behaviour::new(identify::Config::new(
                        "/weft/1".to_owned(),
                        key.public(),
                    )),
                    ping: ping::Behaviour::new(ping::Config::new()),
                    gossipsub,
                    mdns: Toggle::from(mdns),
                    streams: libp2p_stream::Behaviour::new(),
                })
            },
        )
        .map_err(|e| MeshError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();

    let topic = gossipsub::IdentTopic::new(topic_name(&team_id));
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| MeshError::Setup(format!("cannot subscribe to `{topic}`: {e}")))?;

    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
    let mut control = swarm.behaviour().streams.new_control();
    let bulk = match BulkTls::new(&config.keypair) {
        Ok(tls) => Some(Arc::new(tls)),
        Err(why) => {
            tracing::warn!(%why, "no bulk lane: large blobs go over QUIC");
            None
        }
    };
    let shared = Arc::new(
        Shared::new(
            local,
            AdmissionKey::new(&config.team),
            store,
            config.test_hooks.clone(),
            control.clone(),
            commands_tx,
            events_tx,
        )
        .with_bulk(bulk),
    );

    let mut listeners = Vec::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| MeshError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        listeners.push((id, addr.clone()));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut driver = Driver {
        swarm,
        shared: Arc::clone(&shared),
        topic,
        static_peers: config
            .static_peers
            .iter()
            .map(|addr| StaticPeer {
                peer: peer_in(addr),
                addr: addr.clone(),
                dialing: None,
                next_attempt: Instant::now(),
                backoff: STATIC_BACKOFF.0,
            })
            .collect(),
        delayed_dials: HashMap::new(),
        mdns_peers: HashMap::new(),
        initiated: HashSet::new(),
        announced: HashSet::new(),
        pending_gossip: VecDeque::new(),
        admission_deadline: config
            .test_hooks
            .admission_deadline
            .unwrap_or(ADMISSION_DEADLINE),
        block_duration: config.test_hooks.block_duration.unwrap_or(BLOCK_DURATION),
    };
    driver.wait_listening(listeners).await?;
    if let (Some(tls), Some(addr)) = (&shared.bulk, bulk_listen_addr(&config, &driver.swarm)) {
        match bulk::listen(Arc::clone(&shared), Arc::clone(tls), addr, stop_rx.clone()).await {
            Ok(bound) => tracing::info!(address = %bound, "bulk lane listening"),
            // Peers then fetch large blobs from us over QUIC: slower, not broken.
            Err(e) => tracing::warn!(%addr, error = %e, "no bulk lane: cannot listen on TCP"),
        }
    }

    let protocols = [
        (rpc::PROTOCOL, Handler::Rpc),
        (blob::PROTOCOL, Handler::Blob),
        (admit::PROTOCOL, Handler::Admit),
    ];
    for (protocol, handler) in protocols {
        let incoming = control
            .accept(protocol.clone())
            .map_err(|e| MeshError::Setup(format!("cannot accept `{protocol}`: {e}")))?;
        tokio::spawn(accept_loop(
            Arc::clone(&shared),
            incoming,
            handler,
            stop_rx.clone(),
        ));
    }

    let (stopped_tx, stopped_rx) = oneshot::channel();
    tokio::spawn(driver.run(commands_rx, stop_rx, stopped_tx));
    tracing::info!(%local, team = %team_id, "mesh started");
    let mesh = Mesh {
        shared,
        guard: Arc::new(ShutdownGuard {
            stop: stop_tx,
            stopped: std::sync::Mutex::new(Some(stopped_rx)),
        }),
    };
    Ok((mesh, events_rx))
}

/// Where the bulk lane listens: the first QUIC listener's IP (as configured, so a wildcard
/// stays one) at the port QUIC got.
fn bulk_listen_addr(config: &MeshConfig, swarm: &Swarm<Behaviour>) -> Option<SocketAddr> {
    let configured = config.listen.first()?;
    let ip = match configured.iter().next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => IpAddr::V6(ip),
        _ => return None,
    };
    let port = swarm.listeners().find_map(|addr| {
        let mut parts = addr.iter();
        let same_family = matches!(
            (parts.next()?, ip),
            (Protocol::Ip4(_), IpAddr::V4(_)) | (Protocol::Ip6(_), IpAddr::V6(_))
        );
        match parts.next()? {
            Protocol::Udp(port) if same_family => Some(port),
            _ => None,
        }
    })?;
    Some(SocketAddr::new(ip, port))
}

/// Which protocol an accept loop serves.
#[derive(Debug, Clone, Copy)]
enum Handler {
    Admit,
    Rpc,
    Blob,
}

/// Hands every inbound stream of one protocol to its own task, at once: libp2p-stream drops
/// inbound streams that find the loop busy.
async fn accept_loop(
    shared: Arc<Shared>,
    mut incoming: libp2p_stream::IncomingStreams,
    handler: Handler,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => return,
            next = incoming.next() => {
                let Some((peer, stream)) = next else { return };
                let shared = Arc::clone(&shared);
                match handler {
                    Handler::Admit if shared.hooks.skip_admission => {
                        // Play a peer that takes the stream and never answers on it.
                        tokio::spawn(async move {
                            let mut stream = stream;
                            let mut sink = [0u8; 64];
                            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                        });
                    }
                    Handler::Admit => {
                        // Admission runs once per peer: a blocked or unknown peer gets no
                        // exchange, and an admitted one needs none.
                        tokio::spawn(async move {
                            // The stream can arrive before the swarm task has seen the
                            // connection it came on: give it a moment to.
                            let deadline = Instant::now() + Duration::from_secs(2);
                            while shared.state(&peer).is_none() && Instant::now() < deadline {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            if matches!(shared.state(&peer), Some(State::Pending { .. })) {
                                admit::respond(shared, peer, stream).await;
                            } else {
                                tracing::debug!(%peer, "refused an admission stream");
                                Counters::bump(&shared.counters.refused_streams, 1);
                            }
                        });
                    }
                    Handler::Rpc => {
                        tokio::spawn(rpc::serve(shared, peer, stream));
                    }
                    Handler::Blob => {
                        tokio::spawn(blob::serve(shared, peer, stream));
                    }
                }
            }
        }
    }
}

/// A static peer and its dial state.
struct StaticPeer {
    addr: Multiaddr,
    /// Its PeerId, from the address or from the first connection.
    peer: Option<PeerId>,
    /// The dial in flight.
    dialing: Option<ConnectionId>,
    next_attempt: Instant,
    backoff: Duration,
}

/// The swarm task's state.
struct Driver {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    topic: gossipsub::IdentTopic,
    static_peers: Vec<StaticPeer>,
    /// mDNS discoveries to dial later, if still not connected (we are the higher PeerId).
    delayed_dials: HashMap<PeerId, (Instant, Multiaddr)>,
    /// Peers mDNS found and has not expired: dialed again when their connection goes.
    mdns_peers: HashMap<PeerId, Multiaddr>,
    /// Peers we have started admission with as the initiator.
    initiated: HashSet<PeerId>,
    /// Peers announced with [`MeshEvent::PeerAdmitted`] and not lost since.
    announced: HashSet<PeerId>,
    /// Encoded gossip that found no peer, with when it was published.
    pending_gossip: VecDeque<(Instant, Vec<u8>)>,
    admission_deadline: Duration,
    block_duration: Duration,
}

impl Driver {
    /// Polls the swarm until every listener has an address (or failed).
    async fn wait_listening(
        &mut self,
        listeners: Vec<(libp2p::core::transport::ListenerId, Multiaddr)>,
    ) -> Result<(), MeshError> {
        let mut waiting: HashMap<_, _> = listeners.into_iter().collect();
        let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
        while !waiting.is_empty() {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| MeshError::Listen {
                    addr: waiting
                        .values()
                        .next()
                        .cloned()
                        .unwrap_or_else(Multiaddr::empty),
                    reason: "no address after 10 s".to_owned(),
                })?;
            match event {
                SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                } => {
                    tracing::info!(%address, "listening");
                    waiting.remove(&listener_id);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason: Err(err),
                    ..
                }
                | SwarmEvent::ListenerError {
                    listener_id,
                    error: err,
                } => {
                    if let Some(addr) = waiting.remove(&listener_id) {
                        return Err(MeshError::Listen {
                            addr,
                            reason: err.to_string(),
                        });
                    }
                }
                other => self.on_swarm_event(other),
            }
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut stop: watch::Receiver<bool>,
        stopped: oneshot::Sender<()>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|stop| *stop) => break,
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        tracing::info!(local = %self.shared.local, "mesh stopping");
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let linger = tokio::time::sleep(CLOSE_LINGER);
        tokio::pin!(linger);
        while self.swarm.connected_peers().next().is_some() {
            tokio::select! {
                _ = &mut linger => break,
                _ = self.swarm.select_next_some() => {}
            }
        }
        drop(self);
        let _ = stopped.send(());
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_connected(peer_id, connection_id, &endpoint, num_established.get()),
            SwarmEvent::ConnectionClosed {
                peer_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, ?cause, "connection closed");
                self.on_disconnected(peer_id, &endpoint, num_established);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                tracing::debug!(peer = ?peer_id, %error, "dial failed");
                for sp in &mut self.static_peers {
                    if sp.dialing == Some(connection_id) {
                        sp.dialing = None;
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "listening"),
            _ => {}
        }
    }

    fn on_connected(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
        num_established: u32,
    ) {
        tracing::debug!(%peer, ?endpoint, num_established, "connection established");
        for sp in &mut self.static_peers {
            if sp.dialing == Some(connection) {
                sp.dialing = None;
                sp.peer = Some(peer);
            }
        }
        self.delayed_dials.remove(&peer);
        let remote = endpoint.get_remote_address().clone();
        let now = Instant::now();
        let state = {
            let mut peers = self.shared.peers();
            let entry = peers.entry(peer).or_insert_with(|| {
                PeerEntry::new(State::Pending {
                    deadline: now + self.admission_deadline,
                })
            });
            if entry.connected_since.is_none() {
                entry.connected_since = Some(SystemTime::now());
            }
            if !entry.conn_addrs.contains(&remote) {
                entry.conn_addrs.push(remote);
            }
            entry.state
        };
        match state {
            State::Blocked { .. } => {
                // The block list refuses new connections; one that raced it is closed here.
                let _ = self.swarm.disconnect_peer_id(peer);
            }
            State::Admitted => {}
            State::Pending { .. } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, UNADMITTED_SCORE);
                // One side runs the exchange: the one with the lower PeerId, whoever dialed.
                // When both dial at once there are two connections for a moment, and two
                // exchanges would race; one would break when libp2p drops a duplicate.
                if self.shared.local < peer
                    && !self.shared.hooks.skip_admission
                    && self.initiated.insert(peer)
                {
                    tokio::spawn(admit::initiate(Arc::clone(&self.shared), peer));
                }
            }
        }
    }

    fn on_disconnected(&mut self, peer: PeerId, endpoint: &ConnectedPoint, num_established: u32) {
        let remote = endpoint.get_remote_address();
        let mut peers = self.shared.peers();
        let Some(entry) = peers.get_mut(&peer) else {
            return;
        };
        entry.conn_addrs.retain(|addr| addr != remote);
        if num_established > 0 {
            return;
        }
        entry.connected_since = None;
        entry.rtt = None;
        if !matches!(entry.state, State::Blocked { .. }) {
            peers.remove(&peer);
        }
        drop(peers);
        self.initiated.remove(&peer);
        // mDNS reports a peer once: one it found comes back by our dialing it again.
        if let Some(addr) = self.mdns_peers.get(&peer)
            && !matches!(self.shared.state(&peer), Some(State::Blocked { .. }))
        {
            let delay = if self.shared.local < peer {
                Duration::from_secs(1)
            } else {
                MDNS_DIAL_DELAY
            };
            self.delayed_dials
                .insert(peer, (Instant::now() + delay, addr.clone()));
        }
        self.shared.notify_admission_changed();
        if self.announced.remove(&peer) {
            tracing::info!(%peer, "peer lost");
            self.emit(MeshEvent::PeerLost { peer });
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => self.on_gossipsub_event(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if let Some(entry) = self.shared.peers().get_mut(&peer_id) {
                    entry.listen_addrs = info.listen_addrs;
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                if let Some(entry) = self.shared.peers().get_mut(&peer) {
                    entry.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.on_discovered(peer, addr);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                for (peer, _) in gone {
                    self.mdns_peers.remove(&peer);
                }
            }
            _ => {}
        }
    }

    fn on_discovered(&mut self, peer: PeerId, addr: Multiaddr) {
        if peer == self.shared.local {
            return;
        }
        tracing::debug!(%peer, %addr, "discovered by mdns");
        self.swarm.add_peer_address(peer, addr.clone());
        self.mdns_peers.insert(peer, addr.clone());
        if self.swarm.is_connected(&peer)
            || matches!(self.shared.state(&peer), Some(State::Blocked { .. }))
        {
            return;
        }
        if self.shared.local < peer {
            self.dial_peer(peer, addr);
        } else {
            self.delayed_dials
                .entry(peer)
                .or_insert((Instant::now() + MDNS_DIAL_DELAY, addr));
        }
    }

    fn on_gossipsub_event(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                let acceptance = if !self.shared.is_admitted(&propagation_source) {
                    tracing::debug!(peer = %propagation_source, "gossip from a peer not admitted");
                    gossipsub::MessageAcceptance::Reject
                } else {
                    match (message.source, wire::decode::<GossipMessage>(&message.data)) {
                        (Some(author), Ok(msg)) => {
                            self.emit_gossip(MeshEvent::Gossip { peer: author, msg });
                            gossipsub::MessageAcceptance::Accept
                        }
                        (_, Err(err)) => {
                            self.shared.penalise_malformed(&propagation_source);
                            tracing::warn!(peer = %propagation_source, %err, "malformed gossip");
                            gossipsub::MessageAcceptance::Reject
                        }
                        (None, Ok(_)) => gossipsub::MessageAcceptance::Reject,
                    }
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
            }
            gossipsub::Event::Subscribed { peer_id, .. } if self.announced.contains(&peer_id) => {
                self.flush_pending_gossip();
            }
            _ => {}
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish(msg) => match wire::encode(&msg) {
                Ok(bytes) => self.publish(bytes, Instant::now()),
                Err(err) => tracing::error!(%err, "cannot encode a gossip message"),
            },
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Dial(addr) => match peer_in(&addr) {
                Some(peer) => self.dial_peer(peer, addr),
                None => {
                    let opts = DialOpts::unknown_peer_id().address(addr.clone()).build();
                    if let Err(err) = self.swarm.dial(opts) {
                        tracing::info!(%addr, %err, "cannot dial");
                    }
                }
            },
            Command::Accepted { peer, ack } => {
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, 0.0);
                let _ = ack.send(());
            }
            Command::Admitted { peer } => {
                if !self.shared.is_admitted(&peer) || !self.announced.insert(peer) {
                    return;
                }
                Counters::bump(&self.shared.counters.admissions_ok, 1);
                self.initiated.remove(&peer);
                for sp in &mut self.static_peers {
                    if sp.peer == Some(peer) {
                        sp.backoff = STATIC_BACKOFF.0;
                    }
                }
                let addr = self
                    .shared
                    .peers()
                    .get(&peer)
                    .and_then(|entry| entry.conn_addrs.first().cloned());
                tracing::info!(%peer, addr = ?addr, "peer admitted");
                self.emit(MeshEvent::PeerAdmitted { peer, addr });
                self.flush_pending_gossip();
            }
            Command::AdmissionFailed {
                peer,
                reason,
                block,
            } => self.on_admission_failed(peer, reason, block),
        }
    }

    fn on_admission_failed(&mut self, peer: PeerId, reason: String, block: bool) {
        self.initiated.remove(&peer);
        if !block
            && self.swarm.is_connected(&peer)
            && matches!(self.shared.state(&peer), Some(State::Pending { .. }))
        {
            // The exchange broke off (a connection closed under it), but the peer is still
            // here: run it again. The admission deadline ends this for a peer that never
            // completes it.
            tracing::debug!(%peer, %reason, "admission broke off; trying again");
            if self.shared.local < peer && !self.shared.hooks.skip_admission {
                self.initiated.insert(peer);
                let shared = Arc::clone(&self.shared);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    admit::initiate(shared, peer).await;
                });
            }
            return;
        }
        match self.shared.state(&peer) {
            // A member cannot un-prove itself: a redundant or bogus exchange after one that
            // completed changes nothing.
            Some(State::Admitted) => {
                tracing::debug!(%peer, %reason, block, "admission failure after admission; ignored");
                return;
            }
            Some(State::Blocked { .. }) => return,
            // Gone already: a broken exchange is moot, but a refusal is about the peer, not
            // the connection (which the other side's block may have closed before this report
            // came through): it still counts and blocks.
            None if !block => return,
            _ => {}
        }
        Counters::bump(&self.shared.counters.admissions_failed, 1);
        if block {
            let until = Instant::now() + self.block_duration;
            self.shared.set_blocked(&peer, until);
            // Blocking closes every connection to the peer and refuses new ones.
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            tracing::warn!(%peer, %reason, blocked_for = ?self.block_duration, "admission failed");
        } else {
            tracing::info!(%peer, %reason, "admission broke off; disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        if self.announced.remove(&peer) {
            self.emit(MeshEvent::PeerLost { peer });
        }
        self.emit(MeshEvent::AdmissionFailed { peer, reason });
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        // Admission deadlines and expired blocks.
        let mut late = Vec::new();
        let mut unblock = Vec::new();
        for (peer, entry) in self.shared.peers().iter() {
            match entry.state {
                State::Pending { deadline } if deadline <= now => late.push(*peer),
                State::Blocked { until } if until <= now => unblock.push(*peer),
                _ => {}
            }
        }
        for peer in late {
            self.on_admission_failed(
                peer,
                "it did not complete team admission in time".to_owned(),
                true,
            );
        }
        for peer in unblock {
            self.shared.peers().remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            tracing::info!(%peer, "block expired");
        }
        // Static peers.
        for idx in 0..self.static_peers.len() {
            let sp = &self.static_peers[idx];
            let connected = sp.peer.is_some_and(|peer| self.swarm.is_connected(&peer));
            if connected || sp.dialing.is_some() || sp.next_attempt > now {
                continue;
            }
            let (addr, peer) = (sp.addr.clone(), sp.peer);
            let opts = match peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .addresses(vec![addr.clone()])
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build(),
                None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
            };
            let connection = opts.connection_id();
            let dialed = self.swarm.dial(opts);
            let sp = &mut self.static_peers[idx];
            sp.next_attempt = now + sp.backoff;
            sp.backoff = (sp.backoff * 2).min(STATIC_BACKOFF.1);
            match dialed {
                Ok(()) => {
                    tracing::debug!(%addr, "dialing static peer");
                    sp.dialing = Some(connection);
                }
                Err(err) => tracing::debug!(%addr, %err, "cannot dial static peer"),
            }
        }
        // Delayed mDNS dials.
        let due: Vec<PeerId> = self
            .delayed_dials
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in due {
            if let Some((_, addr)) = self.delayed_dials.remove(&peer)
                && !self.swarm.is_connected(&peer)
            {
                self.dial_peer(peer, addr);
            }
        }
        // Old undelivered gossip.
        while self
            .pending_gossip
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > PENDING_GOSSIP_TTL)
        {
            self.pending_gossip.pop_front();
        }
    }

    fn dial_peer(&mut self, peer: PeerId, addr: Multiaddr) {
        if matches!(self.shared.state(&peer), Some(State::Blocked { .. })) {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(vec![addr.clone()])
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(err) = self.swarm.dial(opts) {
            tracing::debug!(%peer, %addr, %err, "not dialing");
        }
    }

    /// Publishes encoded gossip; keeps it for later when no peer could take it.
    fn publish(&mut self, bytes: Vec<u8>, at: Instant) {
        let topic = self.topic.clone();
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, bytes.clone())
        {
            Ok(_) => {}
            Err(
                gossipsub::PublishError::NoPeersSubscribedToTopic
                | gossipsub::PublishError::AllQueuesFull(_),
            ) => {
                if self.pending_gossip.len() >= MAX_PENDING_GOSSIP {
                    self.pending_gossip.pop_front();
                }
                self.pending_gossip.push_back((at, bytes));
            }
            Err(err) => tracing::warn!(%err, "cannot publish gossip"),
        }
    }

    fn flush_pending_gossip(&mut self) {
        let pending = std::mem::take(&mut self.pending_gossip);
        for (at, bytes) in pending {
            self.publish(bytes, at);
        }
    }

    /// Sends a life-cycle event; never drops it (a full channel is waited on in a task).
    fn emit(&self, event: MeshEvent) {
        match self.shared.events.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let events = self.shared.events.clone();
                tokio::spawn(async move {
                    let _ = events.send(event).await;
                });
            }
        }
    }

    /// Sends a gossip event; drops it (and counts that) when the daemon lags behind.
    fn emit_gossip(&self, event: MeshEvent) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.shared.events.try_send(event) {
            Counters::bump(&self.shared.counters.events_dropped, 1);
        }
    }
}

/// The PeerId at the end of `addr` (`.../p2p/<id>`), if any.
fn peer_in(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}
