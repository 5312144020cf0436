//! The Kafka listener's TCP socket and accept loop: at most `kafka.connections_max`
//! connections, one [`connection`](super::connection) driver each; a graceful shutdown
//! stops accepting, lets requests being answered finish (up to `shutdown_grace`), then
//! closes every connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::KafkaSettings;
use super::connection::serve_connection;
use super::dispatch::KafkaService;
use crate::broker::Broker;
use crate::storage::Disk;
use crate::transport::budget::InFlightBudget;

/// Why the Kafka listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaListenError {
    /// Binding the TCP socket failed (most often: the port is in use).
    // The OS error is in the message, not a `source`, so a `{:#}` chain prints it once.
    #[error(
        "cannot listen for Kafka clients on {addr} (TCP): {cause}; choose another address with [kafka] listen or --kafka-listen, or turn the listener off with [kafka] enabled = false"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        cause: std::io::Error,
    },
}

/// A bound Kafka listener.
pub struct KafkaListener {
    listener: std::net::TcpListener,
    settings: KafkaSettings,
}

impl KafkaListener {
    /// Binds the TCP socket. Needs no runtime and no disk, so the node does it before it
    /// touches its data directory: a busy port is one clear error at start.
    pub fn bind(addr: SocketAddr, settings: KafkaSettings) -> Result<Self, KafkaListenError> {
        let bind_error = |cause| KafkaListenError::Bind { addr, cause };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        Ok(Self { listener, settings })
    }

    /// The bound address (the real port when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The `host:port` Metadata gives clients for this node: `advertised_listen`, else the
    /// bound address.
    pub fn advertised(&self) -> String {
        match &self.settings.advertised_listen {
            Some(advertised) => advertised.clone(),
            None => self
                .local_addr()
                .map_or_else(|_| String::new(), |address| address.to_string()),
        }
    }

    /// Sets the `host:port` Metadata gives clients for this node.
    pub fn advertise(&mut self, address: String) {
        self.settings.advertised_listen = Some(address);
    }

    /// Serves until `shutdown` turns true.
    pub async fn serve<D: Disk>(self, broker: Arc<Broker<D>>, mut shutdown: watch::Receiver<bool>) {
        let advertised = self.advertised();
        let local = self.local_addr().ok();
        let listener = match TcpListener::from_std(self.listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(?local, %error, "kafka listener cannot start");
                return;
            }
        };
        let settings = self.settings;
        let connections = Arc::new(Semaphore::new(settings.connections_max));
        let budget = InFlightBudget::new(
            settings.in_flight_bytes_max,
            settings.in_flight_bytes_per_connection_max,
        );
        let grace = settings.shutdown_grace;
        let service = Arc::new(KafkaService::new(Arc::clone(&broker), settings, advertised));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            // Reap finished connections so the set does not grow with every one served.
            while tasks.try_join_next().is_some() {}
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors and the like: the next accept may succeed.
                    tracing::warn!(%error, "kafka listener: accept failed");
                    crate::clock::sleep(&*broker.clock(), std::time::Duration::from_millis(50))
                        .await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                tracing::warn!(%remote, limit = service.settings().connections_max, "kafka connection refused: kafka.connections_max reached");
                drop(stream);
                continue;
            };
            let service = Arc::clone(&service);
            let budget = budget.connection();
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let _permit = permit;
                serve_connection(stream, service, budget, shutdown).await;
            });
        }
        drop(listener);
        // Connections finish the request they are answering, then close.
        let drained = async { while tasks.join_next().await.is_some() {} };
        if crate::clock::timeout(&*broker.clock(), grace, drained)
            .await
            .is_err()
        {
            tracing::warn!(
                grace_ms = grace.as_millis(),
                "kafka listener: shutdown grace over; closing connections with requests unanswered"
            );
        }
    }
}

#[cfg(test)]
mod tests;
