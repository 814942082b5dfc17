#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::ice_tcp(data));
