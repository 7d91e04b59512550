#![no_main]
use std::sync::OnceLock;

use probcraft::lattice::model::Model;

static MODELS: OnceLock<Vec<Model>> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let models = MODELS.get_or_init(probcraft_fuzz::checks::text_models);
    probcraft_fuzz::checks::text(models, data);
});
