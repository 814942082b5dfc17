#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::leg_rtp(data));
