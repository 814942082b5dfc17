//! VP8 picture numbering for one subscription (RFC 7741 §4.2).
//!
//! A VP8 receiver finds a frame's references by its PictureID and TL0PICIDX, and each
//! simulcast layer numbers its pictures on its own (libwebrtc starts every layer and
//! every restarted encoder at a random PictureID). Forwarded as they are, a switch
//! makes the numbers jump: libwebrtc's receiver then takes the new layer's frames for
//! old ones, or stashes them waiting for base-layer pictures that never come, and the
//! video stalls until the next keyframe (seen as a Chromium subscriber decoding 6
//! frames in 3 s after a switch, with no packet lost). So, like sequence numbers, the
//! numbers are re-based at each switch to continue where the output left off.

/// PictureID is 15 bits on the wire (7 in its short form, whose values are the low
/// bits of the same count: continuity in 15 bits is continuity in 7).
pub const PICTURE_ID_MASK: u16 = 0x7fff;

/// The numbering fields of one VP8 packet's payload descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Picture {
    /// PictureID, up to 15 bits.
    pub id: u16,
    /// TL0PICIDX: counts base-layer (temporal layer 0) pictures, wrapping at 256.
    pub tl0: Option<u8>,
}

/// Renumbers the pictures of the sources a subscription forwards over time.
#[derive(Debug, Default)]
pub struct Renumber {
    started: bool,
    id_offset: u16,
    tl0_offset: u8,
    /// The numbers of the newest packet written.
    last: Picture,
}

impl Renumber {
    /// A new source starts at `first`, its keyframe (a base-layer picture): its
    /// numbers continue after the last picture written. The first source keeps its
    /// own numbers.
    pub fn switch(&mut self, first: Option<Picture>) {
        let Some(first) = first else {
            return;
        };
        if !self.started {
            self.started = true;
            self.id_offset = 0;
            self.tl0_offset = 0;
            return;
        }
        self.id_offset = self.last.id.wrapping_add(1).wrapping_sub(first.id) & PICTURE_ID_MASK;
        if let (Some(last), Some(tl0)) = (self.last.tl0, first.tl0) {
            self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
        }
    }

    /// Continue numbering after `last`, written by another subscription to the same
    /// output stream (a slot that carried another track).
    pub fn resume(&mut self, last: Option<Picture>) {
        if let Some(last) = last {
            self.started = true;
            self.last = last;
        }
    }

    /// The numbers to write for a packet of the current source numbered `picture`;
    /// `newest` when the packet is the newest written so far (not a late one).
    pub fn rewrite(&mut self, picture: Option<Picture>, newest: bool) -> Option<Picture> {
        let p = picture?;
        // A source whose first packets carried no numbers starts numbering now.
        self.started = true;
        let out = Picture {
            id: p.id.wrapping_add(self.id_offset) & PICTURE_ID_MASK,
            tl0: p.tl0.map(|t| t.wrapping_add(self.tl0_offset)),
        };
        if newest {
            // A packet without TL0PICIDX leaves the count where it was.
            self.last = Picture {
                id: out.id,
                tl0: out.tl0.or(self.last.tl0),
            };
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pic(id: u16, tl0: u8) -> Option<Picture> {
        Some(Picture { id, tl0: Some(tl0) })
    }

    #[test]
    fn the_first_source_keeps_its_numbers() {
        let mut r = Renumber::default();
        r.switch(pic(1234, 7));
        assert_eq!(r.rewrite(pic(1234, 7), true), pic(1234, 7));
        assert_eq!(r.rewrite(pic(1235, 7), true), pic(1235, 7));
    }

    #[test]
    fn a_switch_continues_after_the_last_picture() {
        let mut r = Renumber::default();
        r.switch(pic(100, 200));
        r.rewrite(pic(100, 200), true);
        r.rewrite(pic(101, 200), true);
        // A late packet of an earlier picture is renumbered but moves nothing.
        assert_eq!(r.rewrite(pic(100, 200), false), pic(100, 200));
        // The next layer numbers from elsewhere, and wraps on both counts.
        r.switch(pic(32_760, 255));
        assert_eq!(r.rewrite(pic(32_760, 255), true), pic(102, 201));
        assert_eq!(r.rewrite(pic(32_767, 0), true), pic(109, 202));
        assert_eq!(r.rewrite(pic(0, 1), true), pic(110, 203));
        // Back down: the output wraps past 32767 to 0 as a receiver expects.
        r.switch(pic(5, 9));
        r.rewrite(pic(5, 9), true);
        let mut last = r.rewrite(pic(5, 9), true).unwrap();
        for i in 0..40_000u16 {
            let out = r.rewrite(pic((6 + i) & PICTURE_ID_MASK, 10), true).unwrap();
            assert_eq!(out.id, (last.id + 1) & PICTURE_ID_MASK);
            last = out;
        }
    }

    #[test]
    fn numbers_go_on_from_another_stream_and_through_unnumbered_packets() {
        let mut r = Renumber::default();
        r.resume(pic(500, 3));
        r.switch(pic(9, 9));
        assert_eq!(r.rewrite(pic(9, 9), true), pic(501, 4));
        assert_eq!(r.rewrite(None, true), None);
        // A source without TL0PICIDX keeps the last offset for it.
        r.switch(Some(Picture { id: 70, tl0: None }));
        assert_eq!(
            r.rewrite(Some(Picture { id: 70, tl0: None }), true),
            Some(Picture { id: 502, tl0: None })
        );
    }
}
