//! Fuzz target: arbitrary bytes as a signed governance request (COSE Sign1) through
//! `consort_gov::verify_gov_request`, against a fixed genesis member table (`gov/`, see `consort_fuzz`). The first
//! byte picks the endpoint's message type and whether the URL names a proposal. Must never panic; a refusal must
//! be a 4xx (the member table is sound, so nothing in a request may make it a server error), and an accepted
//! request must be one of the fixed members', of the expected type, with a canonical (low-S) signature.
#![no_main]

use consort_crypto::{Curve, SForm};
use consort_fuzz::{gov_signers, gov_split, gov_store, GOV_NOW};
use consort_gov::verify_gov_request;
use consort_kv::Store;
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// The genesis store and the member ids with their curves, built once.
    static FIXTURE: (Store, Vec<(String, Curve)>) = (
        gov_store(),
        gov_signers().into_iter().map(|(key, id)| (id, key.curve())).collect(),
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((msg_type, proposal_id, body)) = gov_split(data) else {
        return;
    };
    FIXTURE.with(|(store, members)| {
        let mut tx = store.begin();
        match verify_gov_request(&mut tx, body, msg_type, proposal_id, GOV_NOW) {
            Ok(req) => {
                assert_eq!(req.msg_type, msg_type);
                let curve = members
                    .iter()
                    .find(|(id, _)| *id == req.member_id)
                    .map(|(_, curve)| *curve)
                    .expect("an accepted request names a member");
                assert_eq!(consort_crypto::s_form_raw(curve, &req.signature), Ok(SForm::Low));
                assert_eq!(req.envelope, body);
                if msg_type.needs_proposal_id() {
                    assert!(req.proposal_id.is_some());
                }
                if let (Some(url), Some(signed)) = (proposal_id, &req.proposal_id) {
                    if msg_type.needs_proposal_id() {
                        assert_eq!(url, signed);
                    }
                }
            }
            Err(e) => assert!(
                (400..500).contains(&e.http_status()),
                "a malformed governance request answered {}: {e:?}",
                e.http_status()
            ),
        }
    });
});
