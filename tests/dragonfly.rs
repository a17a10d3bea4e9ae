//! Dragonfly's photon (`.emc`) and detector (`.dat`) files: round trips through our reader and
//! writer, files built by hand from Dragonfly's layout (`writeemc.py`, `emcfile.c`,
//! `detector.py`, `make_detector.py`), and bad files refused by name and field.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xrai_bench::formats::dragonfly::detector::{ConversionError, MASK_GOOD, MASK_IGNORED, MASK_MERGE_ONLY};
use xrai_bench::formats::dragonfly::{
    read_detector, write_detector, DragonflyDetector, EmcKind, EmcReader, EmcWriter, SparseFrame,
};
use xrai_bench::formats::FormatError;
use xrai_bench::physics::beam::Beam;
use xrai_bench::physics::detector::{Detector, PixelMask};

/// Little-endian i32 words.
fn words(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A Dragonfly header: num_data, num_pix, ftype, then zeros to 1024 bytes.
fn header(num_data: i32, num_pix: i32, ftype: i32) -> Vec<u8> {
    let mut h = words(&[num_data, num_pix, ftype]);
    h.resize(1024, 0);
    h
}

/// Three frames of six pixels, by hand in Dragonfly's sparse layout, and the dense frames they
/// stand for.
fn hand_built_emc() -> (Vec<u8>, Vec<Vec<f32>>) {
    let mut bytes = header(3, 6, 0);
    bytes.extend(words(&[2, 0, 1])); // ones
    bytes.extend(words(&[1, 2, 0])); // multi
    bytes.extend(words(&[0, 5, 3])); // place_ones: frame 0 → 0, 5; frame 2 → 3
    bytes.extend(words(&[2, 1, 4])); // place_multi: frame 0 → 2; frame 1 → 1, 4
    bytes.extend(words(&[3, 2, 7])); // count_multi
    let dense = vec![
        vec![1.0, 0.0, 3.0, 0.0, 0.0, 1.0],
        vec![0.0, 2.0, 0.0, 0.0, 7.0, 0.0],
        vec![0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
    ];
    (bytes, dense)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

// ---------------------------------------------------------------------------------------------
// Photon files

#[test]
fn hand_built_emc_file_reads_to_the_expected_photons() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, dense) = hand_built_emc();
    let path = write_file(dir.path(), "hand.emc", &bytes);
    let mut reader = EmcReader::open(&path).unwrap();
    assert_eq!(
        (reader.num_frames(), reader.num_pixels(), reader.kind()),
        (3, 6, EmcKind::Sparse)
    );
    assert_eq!(reader.read_dense(0..3).unwrap(), dense.concat());
    let sparse = reader.read_sparse(1..3).unwrap();
    assert_eq!(
        sparse,
        vec![
            SparseFrame {
                ones: vec![],
                multi: vec![1, 4],
                counts: vec![2, 7]
            },
            SparseFrame {
                ones: vec![3],
                multi: vec![],
                counts: vec![]
            },
        ]
    );
    assert_eq!(sparse[0].photons(), 9);
}

#[test]
fn our_writer_writes_dragonflys_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, dense) = hand_built_emc();
    let path = dir.path().join("ours.emc");
    let mut writer = EmcWriter::create(&path, 6, false).unwrap();
    for frame in &dense {
        writer.write_dense(frame).unwrap();
    }
    let summary = writer.finish().unwrap();
    assert_eq!((summary.frames, summary.photons), (3, 15));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // Only the target is left: the spooled arrays are gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn hand_built_dense_int_file_reads_to_the_expected_photons() {
    let dir = tempfile::tempdir().unwrap();
    let (_, dense) = hand_built_emc();
    let mut bytes = header(3, 6, 1);
    bytes.extend(words(&dense.concat().iter().map(|&v| v as i32).collect::<Vec<_>>()));
    let path = write_file(dir.path(), "dense.emc", &bytes);
    let mut reader = EmcReader::open(&path).unwrap();
    assert_eq!(reader.kind(), EmcKind::DenseInt);
    assert_eq!(reader.read_dense(1..2).unwrap(), dense[1]);
    let sparse = reader.read_sparse(0..3).unwrap();
    for (s, d) in sparse.iter().zip(&dense) {
        assert_eq!(s, &SparseFrame::from_dense(d).unwrap());
    }
}

#[test]
fn frames_round_trip_exactly_and_read_by_any_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photons.emc");
    let (n, num_pix) = (2600, 41);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // Mostly empty pixels, some ones, some multi-photon pixels, and every tenth frame empty.
    let frames: Vec<Vec<f32>> = (0..n)
        .map(|d| {
            (0..num_pix)
                .map(|_| {
                    if d % 10 == 0 {
                        return 0.0;
                    }
                    match rng.random_range(0..10) {
                        0..=5 => 0.0,
                        6..=7 => 1.0,
                        _ => rng.random_range(2..40) as f32,
                    }
                })
                .collect()
        })
        .collect();
    let mut writer = EmcWriter::create(&path, num_pix, false).unwrap();
    for f in &frames {
        writer.write_dense(f).unwrap();
    }
    let summary = writer.finish().unwrap();
    let total: f64 = frames.iter().flatten().map(|&v| v as f64).sum();
    assert_eq!(summary.photons as f64, total);

    let mut reader = EmcReader::open(&path).unwrap();
    assert_eq!((reader.num_frames(), reader.num_pixels()), (n, num_pix));
    assert_eq!(reader.read_dense(0..n).unwrap(), frames.concat());
    // Ranges that start and end around the reader's 1024-frame running totals.
    for range in [0..1, 1023..1025, 1024..1024, 2047..2600, 5..2599, 2599..2600] {
        let got = reader.read_sparse(range.clone()).unwrap();
        let want: Vec<SparseFrame> = frames[range.clone()]
            .iter()
            .map(|f| SparseFrame::from_dense(f).unwrap())
            .collect();
        assert_eq!(got, want, "frames {range:?}");
    }
    // And back out again: ours → Dragonfly → ours → Dragonfly gives the same bytes.
    let again = dir.path().join("again.emc");
    let mut writer = EmcWriter::create(&again, num_pix, false).unwrap();
    for frame in reader.read_sparse(0..n).unwrap() {
        writer.write_sparse(&frame).unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&path).unwrap());
    let err = reader.read_sparse(2590..2601).unwrap_err().to_string();
    assert!(err.contains("photons.emc") && err.contains("frames"), "{err}");
}

#[test]
fn writer_refuses_counts_that_are_not_photons_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.emc");
    for (value, pixel) in [(1.5f32, 2usize), (-1.0, 0), (f32::NAN, 3), (f32::INFINITY, 1)] {
        let mut writer = EmcWriter::create(&path, 4, false).unwrap();
        writer.write_dense(&[0.0, 1.0, 2.0, 0.0]).unwrap();
        let mut frame = vec![0.0f32; 4];
        frame[pixel] = value;
        let err = writer.write_dense(&frame).unwrap_err().to_string();
        assert!(
            err.contains("bad.emc")
                && err.contains(&format!("frame 1, pixel {pixel}"))
                && err.contains("not a photon count"),
            "{err}"
        );
        let err = writer.write_dense(&[0.0; 5]).unwrap_err().to_string();
        assert!(err.contains("5 values") && err.contains("num_pix is 4"), "{err}");
        drop(writer);
    }
    let sparse = SparseFrame {
        ones: vec![4],
        multi: vec![],
        counts: vec![],
    };
    let mut writer = EmcWriter::create(&path, 4, false).unwrap();
    let err = writer.write_sparse(&sparse).unwrap_err().to_string();
    assert!(err.contains("pixel 4 is outside"), "{err}");
    drop(writer);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a refused writer leaves no file"
    );

    // An existing file is kept unless overwriting is asked for.
    std::fs::write(&path, b"keep").unwrap();
    assert!(matches!(
        EmcWriter::create(&path, 4, false),
        Err(FormatError::Exists { .. })
    ));
    let mut writer = EmcWriter::create(&path, 4, true).unwrap();
    writer.write_dense(&[1.0, 0.0, 0.0, 0.0]).unwrap();
    writer.finish().unwrap();
    assert_eq!(EmcReader::open(&path).unwrap().num_frames(), 1);
}

#[test]
fn truncated_or_inconsistent_emc_files_are_refused_by_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = hand_built_emc();
    let patch = |word_at: usize, value: i32| {
        let mut b = good.clone();
        b[word_at..word_at + 4].copy_from_slice(&value.to_le_bytes());
        b
    };
    // Byte offsets: ones at 1024, multi at 1036, place_ones at 1048, place_multi at 1060,
    // count_multi at 1072; the file ends at 1084.
    let open_cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("short.emc", good[..1000].to_vec(), &["header", "1000 bytes"]),
        (
            "hdf5.emc",
            [137, b'H', b'D', b'F', b'\r', b'\n', 26, b'\n']
                .iter()
                .copied()
                .chain(good[8..].iter().copied())
                .collect(),
            &["HDF5"],
        ),
        ("negative_n.emc", patch(0, -3), &["num_data", "-3"]),
        ("no_pixels.emc", patch(4, 0), &["num_pix"]),
        ("ftype.emc", patch(8, 7), &["ftype", "7"]),
        (
            "truncated.emc",
            good[..good.len() - 4].to_vec(),
            &["count_multi", "truncated", "1084", "1080"],
        ),
        ("counts_cut.emc", good[..1030].to_vec(), &["ones/multi", "truncated"]),
        (
            "trailing.emc",
            [good.clone(), vec![0; 8]].concat(),
            &["count_multi", "8 bytes after"],
        ),
        ("negative_ones.emc", patch(1028, -1), &["ones[1]", "-1"]),
        ("too_many.emc", patch(1036, 7), &["multi[0]", "num_pix = 6"]),
        ("more_ones.emc", patch(1024, 3), &["count_multi", "1088"]),
        (
            "dense_short.emc",
            [header(2, 6, 1), words(&[0; 11])].concat(),
            &["frames", "truncated", "1072", "1068"],
        ),
    ];
    for (name, bytes, wanted) in open_cases {
        let path = write_file(dir.path(), name, &bytes);
        let err = EmcReader::open(&path)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"))
            .to_string();
        assert!(err.contains(name), "{name}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{name}: expected '{w}' in: {err}");
        }
    }
    // Problems inside the lists show when the frame is read.
    let read_cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "pixel_range.emc",
            patch(1052, 6),
            &["place_ones[1]", "frame 0", "pixel 6"],
        ),
        (
            "pixel_negative.emc",
            patch(1064, -2),
            &["place_multi[1]", "frame 1", "pixel -2"],
        ),
        (
            "zero_count.emc",
            patch(1072, 0),
            &["count_multi[0]", "frame 0", "count 0"],
        ),
    ];
    for (name, bytes, wanted) in read_cases {
        let path = write_file(dir.path(), name, &bytes);
        let mut reader = EmcReader::open(&path).unwrap();
        let err = reader.read_dense(0..3).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{name}: expected '{w}' in: {err}");
        }
    }
    let missing = EmcReader::open(dir.path().join("missing.emc"))
        .err()
        .unwrap()
        .to_string();
    assert!(missing.contains("missing.emc"), "{missing}");
}

// ---------------------------------------------------------------------------------------------
// Detector files

/// A detector file as Dragonfly's `detector.py` writes it (`%d %.6f %.6f` header, `%21.15e`
/// columns), for pixels given as (qx, qy, qz, corr, mask).
fn dragonfly_detector_text(detd: f64, ewald_rad: f64, pixels: &[(f64, f64, f64, f64, u8)]) -> String {
    let e = |v: f64| {
        // C's %21.15e.
        let s = format!("{v:.15e}");
        let (m, x) = s.split_once('e').unwrap();
        let x: i32 = x.parse().unwrap();
        format!("{:>21}", format!("{m}e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs()))
    };
    let mut text = format!("{} {detd:.6} {ewald_rad:.6}\n", pixels.len());
    for &(qx, qy, qz, corr, mask) in pixels {
        text += &format!("{} {} {} {} {mask}\n", e(qx), e(qy), e(qz), e(corr));
    }
    text
}

#[test]
fn hand_built_detector_file_reads_to_the_expected_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = [
        (-1.25, 0.5, -0.002, 2.5e-5, 0u8),
        (0.0, 0.0, 0.0, 2.6e-5, 2),
        (3.0, -4.0, -0.0125, 2.4e-5, 1),
    ];
    let text = dragonfly_detector_text(1000.0, 1000.0, &pixels);
    assert!(
        text.starts_with("3 1000.000000 1000.000000\n-1.250000000000000e+00 5.000000000000000e-01"),
        "{text}"
    );
    let path = write_file(dir.path(), "det.dat", text.as_bytes());
    let det = read_detector(&path).unwrap();
    assert_eq!(det.num_pix(), 3);
    assert_eq!((det.detd, det.ewald_rad), (Some(1000.0), Some(1000.0)));
    assert_eq!(det.qx, vec![-1.25, 0.0, 3.0]);
    assert_eq!(det.qy, vec![0.5, 0.0, -4.0]);
    assert_eq!(det.qz, vec![-0.002, 0.0, -0.0125]);
    assert_eq!(det.corr, vec![2.5e-5, 2.6e-5, 2.4e-5]);
    assert_eq!(det.mask, vec![MASK_GOOD, MASK_IGNORED, MASK_MERGE_ONLY]);

    // An old-format file (header `num_pix` only) reads, but cannot give s without ewald_rad.
    let old = text.replacen("3 1000.000000 1000.000000", "3", 1);
    let det = read_detector(write_file(dir.path(), "old.dat", old.as_bytes())).unwrap();
    assert_eq!((det.detd, det.ewald_rad), (None, None));
    assert!(matches!(det.to_pixels(1.0), Err(ConversionError::NoEwaldRadius)));
}

#[test]
fn our_detector_matches_dragonflys_make_detector_formulas() {
    // Dragonfly's make_detector.py with detc at the centre, pixel coordinates x (columns here),
    // y in pixel sizes: norm = √(x² + y² + detd²), q = qscaling · (x/norm, y/norm, detd/norm − 1)
    // with qscaling = 1/(λ q_sep) = ewald_rad, corr = detd/norm³ · (1 − x²/norm²).
    let detector = Detector {
        pixels: 8,
        side_m: 0.1,
        distance_m: 0.2,
        ..Default::default()
    };
    let beam = Beam::default();
    let det = DragonflyDetector::from_detector(&detector, &beam);
    let detd = 0.2 / (0.1 / 8.0);
    assert!((det.detd.unwrap() - detd).abs() < 1e-12 && det.ewald_rad == det.detd);
    let q = det.ewald_rad.unwrap();
    for row in 0..8 {
        for col in 0..8 {
            let t = row * 8 + col;
            let (x, y) = (col as f64 + 0.5 - 4.0, row as f64 + 0.5 - 4.0);
            let norm = (x * x + y * y + detd * detd).sqrt();
            let want = [
                q * x / norm,
                q * y / norm,
                q * (detd / norm - 1.0),
                detd / norm.powi(3) * (1.0 - x * x / (norm * norm)),
            ];
            let got = [det.qx[t], det.qy[t], det.qz[t], det.corr[t]];
            for k in 0..4 {
                assert!(
                    (got[k] - want[k]).abs() <= 1e-9 * want[k].abs().max(1e-6),
                    "pixel {t}, column {k}: {got:?} vs {want:?}"
                );
            }
            assert_eq!(det.mask[t], MASK_GOOD);
        }
    }
}

#[test]
fn detector_round_trips_exactly_and_back_to_our_geometry() {
    let dir = tempfile::tempdir().unwrap();
    let detector = Detector {
        pixels: 16,
        side_m: 0.1,
        distance_m: 0.2,
        ..Default::default()
    };
    let beam = Beam::default();
    let geometry = detector.geometry(&beam);
    let mut det = DragonflyDetector::from_detector(&detector, &beam);
    det.mask[5] = MASK_IGNORED;
    det.mask[17] = MASK_MERGE_ONLY;
    let path = dir.path().join("detector.dat");
    write_detector(&path, &det, false).unwrap();
    let back = read_detector(&path).unwrap();
    assert_eq!(back, det, "detector file round trip is not exact");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 257);
    let pixels = back.to_pixels(geometry.wavelength).unwrap();
    for t in 0..geometry.len() {
        for k in 0..3 {
            let (a, b) = (pixels.s[t][k], geometry.s[t][k]);
            assert!((a - b).abs() <= 1e-14 * geometry.s_max(), "pixel {t}: s {a} vs {b}");
        }
        assert_eq!(pixels.correction[t], geometry.correction[t]);
    }
    // The frame shape comes back from the pixels' positions.
    assert_eq!((pixels.rows, pixels.cols), (16, 16));
    let scale = pixels.scale(&beam);
    for (t, (a, b)) in scale.iter().zip(&geometry.scale(&beam)).enumerate() {
        if t == 5 {
            assert_eq!(*a, 0.0, "a bad pixel expects no photons");
        } else {
            assert!((a - b).abs() <= 1e-12 * b, "scale {a} vs {b}");
        }
    }
    assert_eq!(
        (pixels.mask[5], pixels.mask[17], pixels.mask[0]),
        (PixelMask::Bad, PixelMask::MergeOnly, PixelMask::Good)
    );

    // Refused unless overwriting; a wrong wavelength is refused by name.
    assert!(matches!(
        write_detector(&path, &det, false),
        Err(FormatError::Exists { .. })
    ));
    assert!(matches!(back.to_pixels(-1.0), Err(ConversionError::Wavelength(_))));
}

#[test]
fn detector_with_positive_qz_or_off_the_sphere() {
    let det = DragonflyDetector::from_detector(
        &Detector {
            pixels: 6,
            side_m: 0.1,
            distance_m: 0.2,
            ..Default::default()
        },
        &Beam::default(),
    );
    let lambda = Beam::default().wavelength();
    let want = det.to_pixels(lambda).unwrap();
    // The older convention (qz ≥ 0) reads to the same s.
    let flipped = DragonflyDetector {
        qz: det.qz.iter().map(|z| -z).collect(),
        ..det.clone()
    };
    assert_eq!(flipped.to_pixels(lambda).unwrap(), want);
    // An ewald_rad that does not belong to the q vectors is refused, naming the first pixel.
    let wrong = DragonflyDetector {
        ewald_rad: Some(det.ewald_rad.unwrap() * 0.5),
        ..det
    };
    let err = wrong.to_pixels(lambda).unwrap_err().to_string();
    assert!(err.contains("pixel 0") && err.contains("ewald_rad"), "{err}");
}

#[test]
fn bad_detector_files_are_refused_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let good = dragonfly_detector_text(
        200.0,
        200.0,
        &[(0.5, 0.5, -0.001, 1e-5, 0), (1.5, 0.5, -0.006, 1e-5, 0)],
    );
    let lines: Vec<&str> = good.lines().collect();
    let cases: Vec<(&str, String, &[&str])> = vec![
        ("empty.dat", String::new(), &["line 1", "empty"]),
        (
            "header.dat",
            good.replacen("2 200.000000 200.000000", "2 200.0", 1),
            &["line 1", "2 fields"],
        ),
        ("zero.dat", good.replacen("2 200", "0 200", 1), &["num_pix", "'0'"]),
        ("detd.dat", good.replacen("2 200.000000", "2 -5", 1), &["detd", "'-5'"]),
        (
            "few.dat",
            format!("{}\n{}\n", lines[0], lines[1]),
            &["num_pix", "says 2", "1 pixel lines"],
        ),
        (
            "many.dat",
            format!("{good}{}\n", lines[2]),
            &["line 4", "more pixel lines"],
        ),
        ("fields.dat", good.replacen(" 0\n", "\n", 1), &["line 2", "found 4"]),
        (
            "mask.dat",
            format!("{}\n{}\n{} 3\n", lines[0], lines[1], &lines[2][..lines[2].len() - 2]),
            &["line 3, mask", "'3'"],
        ),
        (
            "number.dat",
            good.replacen("5.000000000000000e-01", "0.5x", 1),
            &["line 2, qx", "'0.5x'"],
        ),
        (
            "nan.dat",
            good.replacen("1.500000000000000e+00", "nan", 1),
            &["line 3, qx", "'nan'"],
        ),
    ];
    for (name, text, wanted) in cases {
        let path = write_file(dir.path(), name, text.as_bytes());
        let err = read_detector(&path)
            .err()
            .unwrap_or_else(|| panic!("{name} was accepted"))
            .to_string();
        assert!(err.contains(name), "{name}: {err}");
        for w in wanted {
            assert!(err.contains(w), "{name}: expected '{w}' in: {err}");
        }
    }
    // Blank lines are fine, as in Dragonfly's readers.
    let spaced = good.replacen("\n", "\n\n", 2);
    assert_eq!(
        read_detector(write_file(dir.path(), "spaced.dat", spaced.as_bytes()))
            .unwrap()
            .num_pix(),
        2
    );
    // The writer refuses what Dragonfly could not read.
    let det = read_detector(write_file(dir.path(), "ok.dat", good.as_bytes())).unwrap();
    let no_detd = DragonflyDetector {
        detd: None,
        ..det.clone()
    };
    let err = write_detector(dir.path().join("out.dat"), &no_detd, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("out.dat") && err.contains("detd"), "{err}");
    let bad_mask = DragonflyDetector {
        mask: vec![0, 4],
        ..det
    };
    let err = write_detector(dir.path().join("out.dat"), &bad_mask, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("mask[1]"), "{err}");
    assert!(!dir.path().join("out.dat").exists());
}

#[test]
fn photons_and_detector_go_together() {
    // A simulated-size detector and frames on it: the photon file's num_pix is the detector's.
    let dir = tempfile::tempdir().unwrap();
    let detector = Detector {
        pixels: 12,
        side_m: 0.1,
        distance_m: 0.2,
        ..Default::default()
    };
    let det = DragonflyDetector::from_detector(&detector, &Beam::default());
    write_detector(dir.path().join("detector.dat"), &det, false).unwrap();
    let mut writer = EmcWriter::create(dir.path().join("photons.emc"), det.num_pix(), false).unwrap();
    let mut frame = vec![0.0f32; det.num_pix()];
    frame[6 * 12 + 6] = 5.0; // near the centre
    writer.write_dense(&frame).unwrap();
    writer.finish().unwrap();
    let reader = EmcReader::open(dir.path().join("photons.emc")).unwrap();
    let back = read_detector(dir.path().join("detector.dat")).unwrap();
    assert_eq!(reader.num_pixels(), back.num_pix());
}
