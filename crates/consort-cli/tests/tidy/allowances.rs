//! The tidy allowances: the only place where code may stay over a house-rule budget, each entry with its reason.
//! Entries may only shrink: the tidy test fails when the code under an entry grew past it, and when an entry is no
//! longer needed, so the list stays honest. The failure messages say which entry to add, shrink or remove, and
//! print the table as today's tree would have it.

/// A function over the budget of 100 lines: its file, its name, its length when recorded, and why it stays long.
pub struct LongFunction {
    pub path: &'static str,
    pub name: &'static str,
    pub lines: usize,
    pub reason: &'static str,
}

/// A file over the budget of 800 lines: its path, its length when recorded, and why it stays long.
pub struct LongFile {
    pub path: &'static str,
    pub lines: usize,
    pub reason: &'static str,
}

pub const LONG_FUNCTIONS: &[LongFunction] = &[
    LongFunction {
        path: "crates/consort-consensus/src/replica/open.rs",
        name: "open_with_offload",
        lines: 148,
        reason: "opening a replica from snapshot, ledger and hard state is one ordered recovery sequence; not yet \
                 split into its phases",
    },
    LongFunction {
        path: "crates/consort-gov/src/cose.rs",
        name: "verify_gov_request",
        lines: 130,
        reason: "the checks on a signed governance request in CCF's order, each with its own typed error: one \
                 security check list read top to bottom",
    },
    LongFunction {
        path: "crates/consort-gov/src/js/host.rs",
        name: "install",
        lines: 196,
        reason: "registers each native function of the constitution's host object, one short closure each; a flat \
                 list shows the whole JS surface in one place",
    },
    LongFunction {
        path: "crates/consort-gov/src/proposals.rs",
        name: "resolve",
        lines: 108,
        reason: "ballots, resolve and apply of one proposal in one transaction, as CCF runs them; not yet split",
    },
    LongFunction {
        path: "crates/consort-node/src/api/gov.rs",
        name: "route",
        lines: 116,
        reason: "the /gov route table: one match arm per endpoint of CCF's api-version 2024-07-01",
    },
    LongFunction {
        path: "crates/consort-node/src/apps/smallbank.rs",
        name: "run",
        lines: 105,
        reason: "the SmallBank dispatcher: one arm per transaction type of the benchmark",
    },
];

pub const LONG_FILES: &[LongFile] = &[];

/// Core files with `unwrap`/`expect` outside tests that are not yet marked `// invariant:`, and how many: the
/// count when the rule came in. Each one is either a programmer-error invariant that still lacks its comment, or
/// untrusted input that should get a typed error.
pub const UNMARKED_PANICS: &[(&str, usize)] = &[
    ("crates/consort-consensus/src/codec.rs", 2),
    ("crates/consort-consensus/src/persisted.rs", 2),
    ("crates/consort-consensus/src/replica/mod.rs", 2),
    ("crates/consort-consensus/src/replica/queries.rs", 1),
    ("crates/consort-crypto/src/aead.rs", 1),
    ("crates/consort-crypto/src/ecdsa.rs", 6),
    ("crates/consort-crypto/src/hash.rs", 1),
    ("crates/consort-gov/src/cose.rs", 1),
    ("crates/consort-gov/src/js/host.rs", 1),
    ("crates/consort-gov/src/model.rs", 1),
    ("crates/consort-kv/src/tx.rs", 1),
    ("crates/consort-kv/src/write_set.rs", 1),
];

/// Files with `#[allow(...)]` that do not yet say why, and how many: the count when the rule came in.
pub const UNEXPLAINED_ALLOWS: &[(&str, usize)] = &[];
