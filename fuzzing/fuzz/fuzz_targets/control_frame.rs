#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzzing::control_frame(data));
