//! Echo mode: every byte received is written back unchanged, in order.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::metrics::Encoder;
use crate::transport::service::{CloseReason, Conn, Flow, Flusher, Io, Service};

/// The echo service. It has no framing, so it stops reading a client whose outbound
/// queue is full instead of buffering without limit.
pub(crate) struct Echo;

/// Bytes handed back per read.
const ECHO_CHUNK: usize = 64 * 1024;

impl Service for Echo {
    type Session = ();
    type Tag = ();
    const BACKPRESSURE: bool = true;

    fn read_limit(&self) -> usize {
        ECHO_CHUNK
    }

    fn open(&self, _peer: SocketAddr) {}

    fn input(
        &self,
        conn: &Arc<Conn<Self>>,
        io: &mut Io<Self>,
        flusher: &mut Flusher<Self>,
    ) -> Flow {
        let data = io.inbuf.data();
        let n = data.len();
        conn.send_unbounded(Bytes::copy_from_slice(data), flusher);
        io.inbuf.consume(n);
        Flow::Continue
    }

    fn wake(&self, _: &Arc<Conn<Self>>, _: &mut Io<Self>, _: &mut Flusher<Self>) -> Flow {
        Flow::Continue
    }

    fn closed(&self, _: &Arc<Conn<Self>>, _: &mut (), _: CloseReason) {}

    fn closing_frame(_: CloseReason) -> Option<Bytes> {
        None
    }

    fn encode_metrics(&self, _: &mut Encoder<'_>) -> std::fmt::Result {
        Ok(())
    }
}
