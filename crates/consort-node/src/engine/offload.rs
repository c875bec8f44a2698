//! The second core the node lends to recovery replay: [`consort_consensus::Offload`] with a scoped thread (the
//! consensus core starts no threads itself).

use consort_consensus::Offload;

/// Runs the background half of each replay step on a scoped thread of its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadOffload;

impl Offload for ThreadOffload {
    fn run_beside(&self, background: Box<dyn FnOnce() + Send + '_>, foreground: &mut dyn FnMut()) {
        std::thread::scope(|s| {
            let worker = s.spawn(background);
            foreground();
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }
}
