//! Arbitrary bytes decoded against fixed contracts (fuzz/schemas: a record of most types,
//! a recursive tree, a wide union) in every encoding the contract layer supports: Avro
//! binary, single-object and JSON. The first byte picks the check, the rest is the
//! payload. A check must not panic (not even a decoder panic it would catch), must not
//! allocate past the bound it sets, and must not hang (libFuzzer's -timeout).

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use seawall::contract::{
    set_max_allocation_bytes, ContractCheck, ContractRegistry, ContractSpec, ContractViolation,
    Encoding,
};

/// The decoder's allocation bound for this target: small, so a breach shows quickly.
const BOUND: usize = 1024 * 1024;
/// A collection may grow to twice its final size while it fills; anything past this is
/// an allocation the bound did not stop.
const LARGEST_ALLOWED: usize = 4 * BOUND;

/// The system allocator, remembering the largest single request.
struct Watched;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Watched {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Watched = Watched;

fn checks() -> &'static [ContractCheck] {
    static CHECKS: OnceLock<Vec<ContractCheck>> = OnceLock::new();
    CHECKS.get_or_init(|| {
        assert_eq!(set_max_allocation_bytes(BOUND), BOUND, "bound set first");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let registry = Arc::new(ContractRegistry::load(&dir).expect("fuzz/schemas load"));
        let mut specs: Vec<ContractSpec> = Vec::new();
        for name in ["kitchen", "tree", "choice"] {
            for encoding in [Encoding::Binary, Encoding::Json, Encoding::SingleObject] {
                specs.push(ContractSpec {
                    name: Some(name.into()),
                    encoding,
                    transcode_json: true,
                });
            }
        }
        specs.push(ContractSpec {
            name: None,
            encoding: Encoding::SingleObject,
            transcode_json: true,
        });
        let checks = specs
            .iter()
            .map(|spec| ContractCheck::new(Arc::clone(&registry), spec).expect("valid spec"))
            .collect();
        LARGEST.store(0, Ordering::Relaxed);
        checks
    })
}

fuzz_target!(|data: &[u8]| {
    let checks = checks();
    let Some((&choice, payload)) = data.split_first() else {
        return;
    };
    let check = &checks[usize::from(choice) % checks.len()];
    match check.check(payload) {
        Ok(decoded) => {
            // What a transcoding route hands its handler.
            let json = decoded.to_json();
            assert!(!json.is_null(), "a record decodes to an object");
        }
        Err(ContractViolation::DecoderPanic { schema }) => {
            panic!("the Avro decoder panicked on a {schema} payload")
        }
        Err(violation) => {
            let _ = violation.to_string();
        }
    }
    let largest = LARGEST.swap(0, Ordering::Relaxed);
    assert!(
        largest <= LARGEST_ALLOWED,
        "one allocation of {largest} bytes, over {LARGEST_ALLOWED} (decoder bound {BOUND})"
    );
});
