//! The one detector model ([`PixelDetector`]): the simulator's square detector converts into it
//! exactly, non-square frames bin with partial blocks and masks as documented, the beam position
//! and the frame shape come back from the pixels alone, and a Dragonfly detector file of a
//! cropped, masked detector reads back to the same model.

use xrai_bench::formats::dragonfly::{read_detector, write_detector, DragonflyDetector};
use xrai_bench::physics::beam::Beam;
use xrai_bench::physics::detector::{bin_frames_into, frame_shape, Detector, PixelDetector, PixelMask};
use xrai_bench::physics::slice::Slicer;
use xrai_bench::volume::IntensityVolume;

/// Rows `r0..r1` and columns `c0..c1` of a detector.
fn crop(d: &PixelDetector, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> PixelDetector {
    let mut out = PixelDetector {
        rows: rows.len(),
        cols: cols.len(),
        s: Vec::new(),
        correction: Vec::new(),
        mask: Vec::new(),
        wavelength: d.wavelength,
    };
    for r in rows {
        for c in cols.clone() {
            let t = r * d.cols + c;
            out.s.push(d.s[t]);
            out.correction.push(d.correction[t]);
            out.mask.push(d.mask[t]);
        }
    }
    out.validate().unwrap();
    out
}

fn square(pixels: usize) -> PixelDetector {
    Detector {
        pixels,
        side_m: 0.1,
        distance_m: 0.2,
        ..Default::default()
    }
    .geometry(&Beam::default())
}

fn close(a: [f64; 3], b: [f64; 3], tol: f64) -> bool {
    (0..3).all(|k| (a[k] - b[k]).abs() <= tol)
}

#[test]
fn binning_a_square_detector_gives_the_coarser_square_detector() {
    let (fine, coarse) = (square(8), square(4));
    let binned = fine.binned(2).unwrap();
    assert_eq!((binned.rows, binned.cols), (4, 4));
    let tol = 1e-12 * fine.s_max();
    for t in 0..16 {
        assert!(
            close(binned.s[t], coarse.s[t], tol),
            "pixel {t}: {:?} vs {:?}",
            binned.s[t],
            coarse.s[t]
        );
        // four pixels' P·Ω add up to the coarse pixel's midpoint value up to second order in
        // the block's angular size (25 mm at 0.2 m here: ≈ 0.3 %)
        let rel = (binned.correction[t] - coarse.correction[t]).abs() / coarse.correction[t];
        assert!(
            rel < 5e-3,
            "pixel {t}: correction {} vs {}",
            binned.correction[t],
            coarse.correction[t]
        );
    }
}

#[test]
fn non_square_frames_bin_with_partial_blocks_and_masks() {
    // 7 × 5 of an 8 × 8 detector, binned 2 → 4 × 3 (last block row and column partial).
    let mut d = crop(&square(8), 1..8, 0..5);
    // block (0, 0) holds pixels (0,0) (0,1) (1,0) (1,1): all bad → bad block;
    // block (0, 1) holds (0,2) (0,3) (1,2) (1,3): one bad → good, three pixels' correction.
    for t in [0, 1, 5, 6, 2] {
        d.mask[t] = PixelMask::Bad;
    }
    // block (1, 2) is the partial column (2,4) (3,4): both merge-only → merge-only block
    d.mask[3 * 5 + 4] = PixelMask::MergeOnly;
    d.mask[2 * 5 + 4] = PixelMask::MergeOnly;
    let b = d.binned(2).unwrap();
    assert_eq!((b.rows, b.cols), (4, 3));
    assert_eq!(b.mask[0], PixelMask::Bad);
    assert_eq!(b.mask[1], PixelMask::Good);
    assert_eq!(b.mask[1 * 3 + 2], PixelMask::MergeOnly);
    let want = d.correction[3] + d.correction[5 + 2] + d.correction[5 + 3];
    assert!((b.correction[1] - want).abs() <= 1e-15 * want);
    // the partial corner block (3, 2) is pixel (6, 4) alone: its s and correction
    assert!(close(b.s[3 * 3 + 2], d.s[6 * 5 + 4], 1e-12 * d.s_max()));
    assert_eq!(b.correction[3 * 3 + 2], d.correction[6 * 5 + 4]);

    // frames: block sums with the same partial blocks
    let frame: Vec<f32> = (0..35).map(|v| v as f32).collect();
    let mut out = Vec::new();
    bin_frames_into(&frame, 7, 5, 2, &mut out);
    assert_eq!(out.len(), 12);
    assert_eq!(out[0], 0.0 + 1.0 + 5.0 + 6.0);
    assert_eq!(out[2], 4.0 + 9.0);
    assert_eq!(out[3 * 3 + 2], 34.0);
    assert_eq!(out[3 * 3], 30.0 + 31.0);
}

#[test]
fn beam_position_and_frame_shape_come_from_the_pixels() {
    let full = square(8);
    let (r, c) = full.beam_position();
    assert!((r - 3.5).abs() < 1e-9 && (c - 3.5).abs() < 1e-9, "beam at ({r}, {c})");
    let d = crop(&full, 1..8, 0..5);
    let (r, c) = d.beam_position();
    assert!((r - 2.5).abs() < 1e-9 && (c - 3.5).abs() < 1e-9, "beam at ({r}, {c})");
    assert_eq!(frame_shape(&d.s, d.wavelength), Some((7, 5)));
    // shuffled pixels are not a frame
    let mut s = d.s.clone();
    s.swap(3, 20);
    assert_eq!(frame_shape(&s, d.wavelength), None);
}

#[test]
fn a_cropped_masked_detector_round_trips_through_a_dragonfly_file() {
    let mut d = crop(&square(12), 0..12, 0..10);
    d.mask[40] = PixelMask::Bad;
    d.mask[41] = PixelMask::MergeOnly;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("detector.dat");
    write_detector(&path, &DragonflyDetector::from_pixels(&d, 300.0, 300.0), false).unwrap();
    let back = read_detector(&path).unwrap().to_pixels(d.wavelength).unwrap();
    assert_eq!((back.rows, back.cols), (12, 10));
    assert_eq!(back.mask, d.mask);
    assert_eq!(back.correction, d.correction);
    for t in 0..d.len() {
        assert!(close(back.s[t], d.s[t], 1e-14 * d.s_max()), "pixel {t}");
    }
}

#[test]
fn the_natural_grid_covers_the_detector() {
    let d = crop(&square(16), 0..16, 3..16).binned(3).unwrap();
    let (m, spacing) = d.natural_grid(None).unwrap();
    assert!(m % 2 == 1);
    // one voxel per pixel step at the beam
    assert!((spacing - d.pixel_spacing()).abs() < 1e-15);
    let volume = IntensityVolume::filled(m, spacing, 1.0);
    Slicer::with_scale(&volume, &d.s, vec![1.0; d.len()]).expect("the grid covers every pixel");
    let (m, spacing) = d.natural_grid(Some(15)).unwrap();
    Slicer::with_scale(&IntensityVolume::filled(m, spacing, 1.0), &d.s, vec![1.0; d.len()]).unwrap();
    assert!(d.natural_grid(Some(14)).is_err());
}

#[test]
fn xrai_places_an_off_centre_frame_with_the_beam_at_the_centre_and_masks_its_loss() {
    use xrai_bench::xrai::geometry::WorkingGeometry;
    // 64 × 56 (columns 8..64 of a 64² detector): the beam at column 23.5, binned 4 → 16 × 14
    // with the beam at (7.5, 5.5); placed 2 columns right so that it falls on 7.5, the centre.
    let d = crop(&square(64), 0..64, 8..64);
    let geo = WorkingGeometry::from_detector(&d, 16).unwrap();
    assert_eq!((geo.factor, geo.binned.rows, geo.binned.cols), (4, 16, 14));
    let mask = geo.loss_mask.as_ref().expect("padding is masked");
    for r in 0..16 {
        for c in 0..16 {
            let j = r * 16 + c;
            // padding at columns 0, 1; their π partners at 15, 14
            let used = (2..14).contains(&c);
            assert_eq!(mask[j] > 0.0, used, "pixel ({r}, {c})");
            assert_eq!(geo.pixel_weight[j] > 0.0, used, "pixel ({r}, {c})");
            if c >= 2 {
                assert_eq!(geo.s[j], geo.binned.s[r * 14 + c - 2], "pixel ({r}, {c})");
            }
        }
    }
    // a frame of ones: 16 photons per full block, √16 where measured, 0 in the padding
    let mut out = Vec::new();
    geo.amplitudes(&vec![1.0; 64 * 56], &mut out);
    assert_eq!(out.len(), 256);
    assert_eq!((out[0], out[1], out[2], out[15]), (0.0, 0.0, 4.0, 4.0));

    // a centred square detector is placed as it is, nothing masked
    let geo = WorkingGeometry::from_detector(&square(64), 16).unwrap();
    assert!(geo.loss_mask.is_none());
    assert_eq!(geo.s, square(64).binned(4).unwrap().s);
}
