//! Request buffers that go back to a pool once sent, capacity kept. A batch's span and log
//! requests are each about 1 MiB: allocated afresh, glibc maps them from the kernel and every
//! page faults in on first write (most of what encoding a batch cost), then unmaps them when
//! they are freed. Reused, they are written at memory speed.

use std::{
    ops::Deref,
    sync::{Arc, Mutex},
};

/// Spare buffers kept: a request per signal for each of the export pipeline's batches in
/// flight (4 by default), so steady export never allocates one.
const SPARE: usize = 8;

/// Spare request buffers, shared by the encoder that fills them and the transports that send
/// them.
#[derive(Debug, Default)]
pub struct RequestBuffers {
    spare: Mutex<Vec<Vec<u8>>>,
}

impl RequestBuffers {
    /// An empty buffer that holds at least `capacity` bytes: a spare one when there is one.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        let spare = self.spare().pop();
        let mut buf = spare.unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// Wraps a filled buffer so that it comes back here when dropped.
    pub(crate) fn hand_out(self: &Arc<Self>, bytes: Vec<u8>) -> RequestBuffer {
        RequestBuffer {
            bytes,
            home: Some(self.clone()),
        }
    }

    /// How many spare buffers wait to be reused.
    pub fn spare_count(&self) -> usize {
        self.spare().len()
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut spare = self.spare();
        if spare.len() < SPARE && buf.capacity() > 0 {
            spare.push(buf);
        }
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic while pushing or popping leaves a valid Vec: keep using it.
        self.spare
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An encoded request, returned to its pool (if it has one) when dropped.
#[derive(Debug)]
pub struct RequestBuffer {
    bytes: Vec<u8>,
    home: Option<Arc<RequestBuffers>>,
}

impl RequestBuffer {
    /// Bytes that belong to no pool (a one-off request, such as kspan's metrics).
    pub fn unpooled(bytes: Vec<u8>) -> Self {
        Self { bytes, home: None }
    }

    /// The bytes, kept out of the pool.
    pub fn into_vec(mut self) -> Vec<u8> {
        self.home = None;
        std::mem::take(&mut self.bytes)
    }
}

impl Deref for RequestBuffer {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.bytes
    }
}

impl AsRef<[u8]> for RequestBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq<Vec<u8>> for RequestBuffer {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.bytes == *other
    }
}

impl PartialEq<RequestBuffer> for Vec<u8> {
    fn eq(&self, other: &RequestBuffer) -> bool {
        *self == other.bytes
    }
}

impl Drop for RequestBuffer {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            home.give_back(std::mem::take(&mut self.bytes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_request_is_reused_with_its_capacity() {
        let pool = Arc::new(RequestBuffers::default());
        let mut buf = pool.take(1 << 20);
        buf.extend_from_slice(b"request");
        let address = buf.as_ptr();
        let sent = pool.hand_out(buf);
        assert_eq!(sent.as_slice(), b"request");
        assert_eq!(pool.spare_count(), 0);
        drop(sent);
        assert_eq!(pool.spare_count(), 1);
        let again = pool.take(1000);
        assert!(again.is_empty(), "a reused buffer starts empty");
        assert!(again.capacity() >= 1 << 20);
        assert_eq!(again.as_ptr(), address, "the same allocation");
        assert_eq!(pool.spare_count(), 0);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_and_lets_go_of_the_rest() {
        let pool = Arc::new(RequestBuffers::default());
        let out: Vec<RequestBuffer> = (0..SPARE + 3)
            .map(|_| pool.hand_out(pool.take(64)))
            .collect();
        drop(out);
        assert_eq!(pool.spare_count(), SPARE);
        // Taken out of the pool for good: not returned.
        let kept = pool.hand_out(pool.take(64)).into_vec();
        assert_eq!(pool.spare_count(), SPARE - 1);
        drop(kept);
        drop(RequestBuffer::unpooled(vec![1, 2, 3]));
        assert_eq!(pool.spare_count(), SPARE - 1);
    }
}
