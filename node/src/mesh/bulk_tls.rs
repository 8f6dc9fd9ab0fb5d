//! The bulk lane's TLS: this node's libp2p identity certificate presented both ways, the check
//! that a peer's certificate is a valid libp2p identity certificate, and which PeerId it names.
//!
//! Both sides present the self-signed certificate `libp2p_tls::certificate` makes from the
//! node's ed25519 key (its extension is signed by that key, so the certificate proves the
//! PeerId). The verifiers accept exactly such certificates; which PeerId is acceptable is
//! decided after the handshake, from [`peer_of_connection`]: the client requires the peer it
//! meant to reach, the server an admitted team member. TLS 1.3 only, AES-GCM first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, InvalidDnsNameError, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The name the client asks for; the certificate check ignores it (identity is the PeerId).
const SERVER_NAME: &str = "weft";

/// How long a peer whose lane could not be used is fetched from over QUIC only: a firewall
/// that drops TCP would otherwise cost every large blob a connect timeout.
pub(crate) const UNAVAILABLE_FOR: Duration = Duration::from_secs(300);

/// Why this node has no bulk lane: its TLS settings could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BulkTlsError {
    /// The identity certificate could not be made.
    #[error("cannot make the bulk lane's certificate: {source}")]
    Certificate {
        source: libp2p_tls::certificate::GenError,
    },
    /// rustls refuses the certificate's key.
    #[error("the bulk lane's key is unusable: {source}")]
    Key { source: rustls::Error },
    /// rustls refuses the protocol versions asked for.
    #[error("the bulk lane's TLS settings are refused: {source}")]
    Settings { source: rustls::Error },
    /// [`SERVER_NAME`] is not a DNS name.
    #[error("`{SERVER_NAME}` is not a valid server name: {source}")]
    ServerName { source: InvalidDnsNameError },
}

/// This node's TLS settings for the bulk lane, both ways, and the peers whose lane failed.
pub(crate) struct BulkTls {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    server_name: ServerName<'static>,
    unavailable: Mutex<HashMap<PeerId, Instant>>,
}

impl BulkTls {
    /// Certificates bound to `keypair`, TLS 1.3 only, AES-GCM first.
    pub(crate) fn new(keypair: &libp2p::identity::Keypair) -> Result<BulkTls, BulkTlsError> {
        let (cert, key) = libp2p_tls::certificate::generate(keypair)
            .map_err(|source| BulkTlsError::Certificate { source })?;
        let mut provider = rustls::crypto::ring::default_provider();
        // AES-GCM has hardware support almost everywhere; ChaCha20 is kept for machines
        // without it.
        provider.cipher_suites = vec![
            rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
            rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
            rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        // Our certificate is handed over as is: its libp2p extension is marked critical, so
        // rustls's own checks of a certificate it is given would refuse it.
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|source| BulkTlsError::Key { source })?;
        let ours = Arc::new(OurCertificate(Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert],
            signing_key,
        ))));
        let provider = Arc::new(provider);
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| BulkTlsError::Settings { source })?
            .with_client_cert_verifier(Arc::new(PeerCertificate))
            .with_cert_resolver(ours.clone());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| BulkTlsError::Settings { source })?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerCertificate))
            .with_client_cert_resolver(ours);
        let server_name = ServerName::try_from(SERVER_NAME)
            .map_err(|source| BulkTlsError::ServerName { source })?;
        Ok(BulkTls {
            client: Arc::new(client),
            server: Arc::new(server),
            server_name,
            unavailable: Mutex::new(HashMap::new()),
        })
    }

    /// A new client side of a bulk connection.
    pub(crate) fn client_connection(&self) -> Result<rustls::ClientConnection, rustls::Error> {
        rustls::ClientConnection::new(Arc::clone(&self.client), self.server_name.clone())
    }

    /// A new server side of a bulk connection.
    pub(crate) fn server_connection(&self) -> Result<rustls::ServerConnection, rustls::Error> {
        rustls::ServerConnection::new(Arc::clone(&self.server))
    }

    /// Whether `peer`'s lane failed less than [`UNAVAILABLE_FOR`] ago.
    pub(crate) fn unavailable_recently(&self, peer: &PeerId) -> bool {
        let mut unavailable = self.unavailable.lock().unwrap_or_else(|e| e.into_inner());
        match unavailable.get(peer) {
            Some(since) if since.elapsed() < UNAVAILABLE_FOR => true,
            Some(_) => {
                unavailable.remove(peer);
                false
            }
            None => false,
        }
    }

    /// Remembers that `peer`'s lane could not be used just now.
    pub(crate) fn mark_unavailable(&self, peer: PeerId) {
        self.unavailable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, Instant::now());
    }
}

/// Presents this node's identity certificate, to servers and clients alike.
#[derive(Debug)]
struct OurCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for OurCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

impl rustls::client::ResolvesClientCert for OurCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts a certificate exactly when it is a valid libp2p identity certificate: self-signed,
/// with an extension signed by the key the PeerId names. Which PeerId is acceptable is
/// decided after the handshake, from [`peer_of_connection`].
#[derive(Debug)]
struct PeerCertificate;

impl PeerCertificate {
    fn check(
        cert: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "a weft peer presents exactly one certificate".to_owned(),
            ));
        }
        libp2p_tls::certificate::parse(cert)
            .map(|_| ())
            .map_err(|e| rustls::Error::General(format!("not a libp2p identity certificate: {e}")))
    }

    fn check_signature(
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let parsed = libp2p_tls::certificate::parse(cert).map_err(|e| {
            rustls::Error::General(format!("not a libp2p identity certificate: {e}"))
        })?;
        parsed
            .verify_signature(dss.scheme, message, dss.signature())
            .map_err(|e| rustls::Error::General(format!("bad handshake signature: {e}")))?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn schemes() -> Vec<SignatureScheme> {
        // What libp2p identity certificates are signed with.
        vec![
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::ED25519,
        ]
    }
}

impl ServerCertVerifier for PeerCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        PeerCertificate::check(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        PeerCertificate::check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        PeerCertificate::schemes()
    }
}

impl ClientCertVerifier for PeerCertificate {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        PeerCertificate::check(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".to_owned()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        PeerCertificate::check_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        PeerCertificate::schemes()
    }
}

/// The PeerId the other side's certificate names, once the handshake is done.
pub(crate) fn peer_of_connection(certs: Option<&[CertificateDer<'_>]>) -> Option<PeerId> {
    let cert = certs?.first()?;
    libp2p_tls::certificate::parse(cert)
        .ok()
        .map(|parsed| parsed.peer_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_build_from_an_identity() {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        if let Err(why) = BulkTls::new(&keypair) {
            panic!("{why}");
        }
    }

    #[test]
    fn a_peer_whose_lane_failed_is_skipped_for_a_while() {
        let tls = BulkTls::new(&libp2p::identity::Keypair::generate_ed25519()).expect("tls");
        let peer = PeerId::random();
        assert!(!tls.unavailable_recently(&peer));
        tls.mark_unavailable(peer);
        assert!(tls.unavailable_recently(&peer));
        assert!(!tls.unavailable_recently(&PeerId::random()));
        // Once the time is up, the lane is tried again.
        let long_ago = Instant::now()
            .checked_sub(UNAVAILABLE_FOR + Duration::from_secs(1))
            .expect("an instant in the past");
        tls.unavailable.lock().expect("lock").insert(peer, long_ago);
        assert!(!tls.unavailable_recently(&peer));
    }

    #[test]
    fn certificates_name_their_peer() {
        let keypair = libp2p::identity::Keypair::generate_ed25519();
        let (cert, _key) = libp2p_tls::certificate::generate(&keypair).expect("cert");
        assert_eq!(
            peer_of_connection(Some(std::slice::from_ref(&cert))),
            Some(keypair.public().to_peer_id())
        );
        assert!(PeerCertificate::check(&cert, &[]).is_ok());
        assert!(PeerCertificate::check(&cert, std::slice::from_ref(&cert)).is_err());
        let junk = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(PeerCertificate::check(&junk, &[]).is_err());
        assert_eq!(peer_of_connection(Some(&[junk])), None);
        assert_eq!(peer_of_connection(None), None);
    }
}
