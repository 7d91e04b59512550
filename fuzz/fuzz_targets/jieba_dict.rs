#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| probcraft_fuzz::checks::jieba_dict(data));
