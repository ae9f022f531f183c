//! What the SMR integration tests share.

use byzscale_core::service::Service;

/// Appends each op to a log; replies with the log length.
#[derive(Default)]
pub struct Log(pub Vec<Vec<u8>>);
impl Service for Log {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        self.0.push(op.to_vec());
        (self.0.len() as u64).to_le_bytes().to_vec()
    }
    fn query(&self, _op: &[u8]) -> Option<Vec<u8>> {
        Some((self.0.len() as u64).to_le_bytes().to_vec())
    }
    fn snapshot(&self) -> Vec<u8> {
        byzscale_core::codec::to_bytes(&self.0)
    }
    fn restore(&mut self, s: &[u8]) -> Result<(), String> {
        self.0 = byzscale_core::codec::from_bytes(s, usize::MAX).map_err(|e| e.to_string())?;
        Ok(())
    }
}
