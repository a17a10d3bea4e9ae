//! CXI files (the `hdf5` feature): our writer → our reader is exact; files built here with the raw
//! HDF5 API in Condor's layout, in the CXI image-class layout and like CXIDB entry 58 (PR772)
//! read to the values put in; bad files and bad writer arguments give errors that name the file
//! and the dataset, before anything is written.
#![cfg(feature = "hdf5")]

use std::path::Path;

use hdf5::H5Type;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xrai_bench::formats::cxi::{CxiGeometry, CxiReader, CxiWriter, JOULES_PER_EV};
use xrai_bench::formats::FormatError;
use xrai_bench::rotation::{random_rotation, to_wxyz};

/// Writes `data` with `shape` at `name` (groups created along the way).
fn put<T: H5Type>(file: &hdf5::File, name: &str, shape: &[usize], data: &[T]) {
    let (group, leaf) = name.rsplit_once('/').unwrap_or(("", name));
    let mut g: hdf5::Group = (**file).clone();
    for c in group.split('/').filter(|c| !c.is_empty()) {
        g = if g.link_exists(c) {
            g.group(c).unwrap()
        } else {
            g.create_group(c).unwrap()
        };
    }
    let array = ndarray::ArrayViewD::from_shape(shape, data).unwrap();
    g.new_dataset_builder().with_data(array).create(leaf).unwrap();
}

/// Writes a scalar dataset at `name`.
fn put_scalar<T: H5Type>(file: &hdf5::File, name: &str, value: T) {
    put(file, name, &[], &[value]);
}

fn err_text(e: FormatError) -> String {
    e.to_string()
}

fn open_err(path: &Path, dataset: Option<&str>) -> String {
    match CxiReader::open(path, dataset) {
        Ok(_) => panic!("{} opened, but it should not", path.display()),
        Err(e) => err_text(e),
    }
}

fn same_rotation(a: [f64; 4], b: [f64; 4]) -> f64 {
    let plus: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let minus: f64 = a.iter().zip(&b).map(|(x, y)| (x + y).abs()).fold(0.0, f64::max);
    plus.min(minus)
}

#[test]
fn readers_and_writers_move_between_threads() {
    // data::Source hands frame readers to worker threads.
    fn send<T: Send>() {}
    send::<CxiReader>();
    send::<CxiWriter>();
}

#[test]
fn written_file_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frames.cxi");
    let (rows, cols) = (7, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let frames: Vec<f32> = (0..9 * rows * cols)
        .map(|_| rng.random::<f32>() * 100.0 - 10.0)
        .collect();
    let poses: Vec<[f64; 4]> = (0..9).map(|_| to_wxyz(&random_rotation(&mut rng))).collect();
    let mask: Vec<bool> = (0..rows * cols).map(|p| p % 3 == 0 || p == 17).collect();
    let geometry = CxiGeometry {
        distance_m: 0.586,
        pixel_size_m: 300e-6,
        photon_energy_ev: 1600.0,
    };
    let mut writer = CxiWriter::create(&path, rows, cols, Some(&geometry), Some(&mask), None, false).unwrap();
    // Appends in uneven pieces, across the chunk boundary.
    writer
        .write_posed_frames(&frames[..2 * rows * cols], &poses[..2])
        .unwrap();
    assert!(!path.exists(), "nothing at the target before finish");
    writer
        .write_posed_frames(&frames[2 * rows * cols..], &poses[2..])
        .unwrap();
    assert_eq!(writer.frames(), 9);
    assert_eq!(writer.finish().unwrap(), 9);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "only the file remains: {leftovers:?}");

    let reader = CxiReader::open(&path, None).unwrap();
    assert_eq!(reader.dataset_path(), "entry_1/data_1/data");
    assert_eq!(reader.num_frames(), 9);
    assert_eq!(reader.shape(), (rows, cols));
    assert_eq!(reader.read_frames(0..9).unwrap(), frames);
    assert_eq!(
        reader.read_frames(3..5).unwrap(),
        frames[3 * rows * cols..5 * rows * cols]
    );
    assert!(reader.read_frames(4..4).unwrap().is_empty());
    assert_eq!(reader.mask().unwrap(), mask);
    let g = reader.geometry().unwrap();
    assert_eq!(g.distance_m, 0.586);
    assert_eq!(g.pixel_size_m, 300e-6);
    // Stored in joules and converted back: exact to rounding.
    assert!((g.photon_energy_ev - 1600.0).abs() < 1e-9, "{}", g.photon_energy_ev);
    let read_poses = reader.poses().unwrap();
    assert_eq!(read_poses.len(), 9);
    for (a, b) in poses.iter().zip(&read_poses) {
        assert!(same_rotation(*a, *b) < 1e-12, "{a:?} read back as {b:?}");
    }

    // The layout other tools look for.
    let file = hdf5::File::open(&path).unwrap();
    assert_eq!(file.dataset("cxi_version").unwrap().read_scalar::<i32>().unwrap(), 160);
    let energy_j: f64 = file
        .dataset("entry_1/instrument_1/source_1/energy")
        .unwrap()
        .read_scalar()
        .unwrap();
    assert!((energy_j - 1600.0 * JOULES_PER_EV).abs() < 1e-30);
    let y: f64 = file
        .dataset("entry_1/instrument_1/detector_1/y_pixel_size")
        .unwrap()
        .read_scalar()
        .unwrap();
    assert_eq!(y, 300e-6);
    let linked: Vec<u32> = file.dataset("entry_1/data_1/mask").unwrap().read_raw().unwrap();
    let expected: Vec<u32> = mask.iter().map(|&b| b as u32).collect();
    assert_eq!(linked, expected, "bad pixels are CXI_PIXEL_IS_INVALID (0x1)");
    let data = file.dataset("entry_1/data_1/data").unwrap();
    assert!(data.is_chunked() && data.is_resizable());
}

#[test]
fn poses_follow_cxi_direction_cosines() {
    // A rotation by 90° about z: R maps x → y, so its first rows are (0, −1, 0) and (1, 0, 0).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.cxi");
    let h = std::f64::consts::FRAC_1_SQRT_2;
    let mut writer = CxiWriter::create(&path, 2, 2, None, None, None, false).unwrap();
    writer.write_posed_frames(&[0.0; 4], &[[h, 0.0, 0.0, h]]).unwrap();
    writer.finish().unwrap();
    let file = hdf5::File::open(&path).unwrap();
    let cosines: Vec<f64> = file
        .dataset("entry_1/sample_1/geometry_1/orientation")
        .unwrap()
        .read_raw()
        .unwrap();
    let expected = [0.0, -1.0, 0.0, 1.0, 0.0, 0.0];
    for (c, e) in cosines.iter().zip(expected) {
        assert!((c - e).abs() < 1e-15, "{cosines:?}");
    }
    let reader = CxiReader::open(&path, None).unwrap();
    assert!(same_rotation(reader.poses().unwrap()[0], [h, 0.0, 0.0, h]) < 1e-15);
    assert!(reader.geometry().is_none() && reader.mask().is_none());
}

#[test]
fn condor_layout_built_by_hand_reads_to_the_expected_values() {
    // Condor's output: u16 intensities (N, y, x), a per-frame u16 mask beside them, geometry per
    // frame, energy in joules.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("condor.cxi");
    let (n, rows, cols) = (3, 4, 5);
    let data: Vec<u16> = (0..n * rows * cols).map(|v| (v * 7 % 1000) as u16).collect();
    let mut mask = vec![0u16; n * rows * cols];
    mask[2] = 16; // frame 0, pixel 2: shadowed (beamstop) → bad
    mask[20 + 7] = 32; // frame 1, pixel 7: in the peak-finding mask → good
    mask[40 + 9] = 1024; // frame 2, pixel 9: noisy → bad
    mask[40 + 11] = 0x1000; // frame 2, pixel 11: has signal → good
    mask[13] = 64 | 0x8000; // frame 0, pixel 13: Condor's "to be ignored" → bad
    {
        let file = hdf5::File::create(&path).unwrap();
        put_scalar(&file, "cxi_version", 150i32);
        put(&file, "entry_1/data_1/data", &[n, rows, cols], &data);
        put(&file, "entry_1/data_1/mask", &[n, rows, cols], &mask);
        put(&file, "entry_1/instrument_1/detector_1/distance", &[n], &[0.15f64; 3]);
        put_scalar(&file, "entry_1/instrument_1/detector_1/x_pixel_size", 110e-6f64);
        put_scalar(&file, "entry_1/instrument_1/detector_1/y_pixel_size", 110e-6f64);
        put_scalar(&file, "entry_1/instrument_1/source_1/energy", 1.2e-15f64);
    }
    let reader = CxiReader::open(&path, None).unwrap();
    assert_eq!((reader.num_frames(), reader.shape()), (3, (4, 5)));
    let expected: Vec<f32> = data.iter().map(|&v| v as f32).collect();
    assert_eq!(reader.read_frames(0..3).unwrap(), expected);
    assert_eq!(reader.read_frames(2..3).unwrap(), expected[40..]);
    let bad: Vec<usize> = reader
        .mask()
        .unwrap()
        .iter()
        .enumerate()
        .filter_map(|(p, &b)| b.then_some(p))
        .collect();
    assert_eq!(bad, vec![2, 9, 13]);
    let g = reader.geometry().unwrap();
    assert_eq!((g.distance_m, g.pixel_size_m), (0.15, 110e-6));
    let ev = 1.2e-15 / 1.602_176_634e-19;
    assert!((g.photon_energy_ev - ev).abs() < 1e-9 * ev, "{}", g.photon_energy_ev);
    assert!(reader.poses().is_none());
}

#[test]
fn image_class_with_one_frame_and_energy_in_ev() {
    // /entry_1/image_1/data as one 2D f64 frame, its mask beside it, the energy in eV (as the
    // CXI repository's typical_raw_cxi.py writes it), only a distance and an x pixel size.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.cxi");
    let frame: Vec<f64> = (0..6).map(|v| v as f64 * 0.5 - 1.0).collect();
    {
        let file = hdf5::File::create(&path).unwrap();
        put(&file, "entry_1/image_1/data", &[2, 3], &frame);
        put(&file, "entry_1/image_1/mask", &[2, 3], &[0u8, 1, 0, 0, 0, 0]);
        put_scalar(&file, "entry_1/instrument_1/detector_1/distance", 0.7f64);
        put_scalar(&file, "entry_1/instrument_1/source_1/energy", 1803.4f64);
    }
    let reader = CxiReader::open(&path, None).unwrap();
    assert_eq!(reader.dataset_path(), "entry_1/image_1/data");
    assert_eq!((reader.num_frames(), reader.shape()), (1, (2, 3)));
    let expected: Vec<f32> = frame.iter().map(|&v| v as f32).collect();
    assert_eq!(reader.read_frames(0..1).unwrap(), expected);
    assert_eq!(reader.mask().unwrap(), vec![false, true, false, false, false, false]);
    assert!(reader.geometry().is_none(), "no pixel size: geometry incomplete");
    let partial = reader.partial_geometry();
    assert_eq!(partial.distance_m, Some(0.7));
    assert_eq!(partial.photon_energy_ev, Some(1803.4));
    assert_eq!(partial.pixel_size_m, None);
    assert!(err_text(reader.read_frames(0..2).unwrap_err()).contains("frames 0..2 asked for, the file has 1"));
}

#[test]
fn cxidb_58_like_file_reads_at_its_dataset_path() {
    // PR772 (CXIDB 58): pnCCD photon counts, 260 × 257 after 4 × 4 binning, no CXI geometry.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pr772.cxi");
    let (n, rows, cols) = (4, 260, 257);
    let counts: Vec<u16> = (0..n * rows * cols).map(|v| ((v * 31) % 97) as u16).collect();
    {
        let file = hdf5::File::create(&path).unwrap();
        put(
            &file,
            "photonConverter/pnccdBack/photonCount",
            &[n, rows, cols],
            &counts,
        );
        put_scalar(&file, "LCLS/photon_energy_eV", 1600.0f64);
    }
    for given in [
        "photonConverter/pnccdBack/photonCount",
        "/photonConverter/pnccdBack/photonCount",
    ] {
        let reader = CxiReader::open(&path, Some(given)).unwrap();
        assert_eq!(reader.num_frames(), 4);
        assert_eq!(reader.shape(), (260, 257));
        assert!(reader.geometry().is_none());
        assert!(reader.mask().is_none() && reader.poses().is_none());
        let frame = rows * cols;
        let expected: Vec<f32> = counts[frame..3 * frame].iter().map(|&v| v as f32).collect();
        assert_eq!(reader.read_frames(1..3).unwrap(), expected);
    }
    // Without the path: the error names the default and lists what the file has.
    let msg = open_err(&path, None);
    assert!(
        msg.contains("pr772.cxi") && msg.contains("/entry_1/data_1/data"),
        "{msg}"
    );
    assert!(msg.contains("LCLS, photonConverter"), "{msg}");
}

#[test]
fn integer_and_float_datasets_read_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("types.cxi");
    let values = [0u8, 1, 2, 3, 4, 5];
    let expected: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    {
        let file = hdf5::File::create(&path).unwrap();
        put(&file, "t/u8", &[1, 2, 3], &values);
        put(&file, "t/u16", &[1, 2, 3], &values.map(u16::from));
        put(&file, "t/u32", &[1, 2, 3], &values.map(u32::from));
        put(&file, "t/i16", &[1, 2, 3], &values.map(i16::from));
        put(&file, "t/i32", &[1, 2, 3], &values.map(i32::from));
        put(&file, "t/f32", &[1, 2, 3], &values.map(f32::from));
        put(&file, "t/f64", &[1, 2, 3], &values.map(f64::from));
        put(&file, "t/neg", &[2, 3], &[-3i16, -2, -1, 0, 1, 2]);
    }
    for name in ["u8", "u16", "u32", "i16", "i32", "f32", "f64"] {
        let reader = CxiReader::open(&path, Some(&format!("t/{name}"))).unwrap();
        assert_eq!(reader.read_frames(0..1).unwrap(), expected, "{name}");
    }
    let reader = CxiReader::open(&path, Some("t/neg")).unwrap();
    assert_eq!(reader.read_frames(0..1).unwrap(), vec![-3.0, -2.0, -1.0, 0.0, 1.0, 2.0]);
}

#[test]
fn bad_files_give_errors_naming_file_and_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.cxi");
    {
        let file = hdf5::File::create(&path).unwrap();
        put(&file, "entry_1/data_1/data", &[2, 3, 4, 5], &[0f32; 120]);
        put(&file, "entry_1/data_2/data", &[2, 3, 4], &[0f32; 24]);
        put_scalar(&file, "entry_1/instrument_1/detector_1/x_pixel_size", 75e-6f64);
        put_scalar(&file, "entry_1/instrument_1/detector_1/y_pixel_size", 80e-6f64);
        let strings = file.create_group("text").unwrap();
        let s: hdf5::types::VarLenUnicode = "hello".parse().unwrap();
        strings
            .new_dataset::<hdf5::types::VarLenUnicode>()
            .shape(())
            .create("note")
            .unwrap()
            .write_scalar(&s)
            .unwrap();
    }
    // A 4-D dataset is not a stack of frames.
    let msg = open_err(&path, None);
    assert!(msg.contains("bad.cxi") && msg.contains("/entry_1/data_1/data"), "{msg}");
    assert!(msg.contains("4-dimensional"), "{msg}");
    // A missing dataset: named, with the top-level groups and the deepest existing group's members.
    let msg = open_err(&path, Some("entry_1/data_9/data"));
    assert!(
        msg.contains("/entry_1/data_9/data") && msg.contains("no such dataset"),
        "{msg}"
    );
    assert!(msg.contains("top-level members: entry_1, text"), "{msg}");
    assert!(
        msg.contains("members of /entry_1: data_1, data_2, instrument_1"),
        "{msg}"
    );
    // A group where frames were expected.
    let msg = open_err(&path, Some("entry_1/data_2"));
    assert!(msg.contains("a group, not a dataset; its members: data"), "{msg}");
    // Strings are not frames.
    let msg = open_err(&path, Some("text/note"));
    assert!(
        msg.contains("/text/note") && msg.contains("expected integer or floating-point"),
        "{msg}"
    );
    // Unequal pixel sizes.
    let msg = open_err(&path, Some("entry_1/data_2/data"));
    assert!(msg.contains("x_pixel_size") && msg.contains("y_pixel_size"), "{msg}");
    assert!(msg.contains("only square pixels"), "{msg}");
    // Not a dataset path.
    let msg = open_err(&path, Some("entry_1//data"));
    assert!(msg.contains("not a dataset path"), "{msg}");
    // Not an HDF5 file, and a missing file.
    let text = dir.path().join("notes.cxi");
    std::fs::write(&text, "not hdf5").unwrap();
    let msg = open_err(&text, None);
    assert!(
        msg.contains("notes.cxi") && msg.contains("cannot be opened as an HDF5"),
        "{msg}"
    );
    let msg = open_err(&dir.path().join("absent.cxi"), None);
    assert!(msg.contains("absent.cxi"), "{msg}");
}

#[test]
fn bad_geometry_mask_and_poses_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    type Extra = Box<dyn Fn(&hdf5::File)>;
    let cases: [(&str, Extra, &str); 5] = [
        (
            "energy",
            Box::new(|f| put_scalar(f, "entry_1/instrument_1/source_1/energy", 0.5f64)),
            "neither a photon energy in joules",
        ),
        (
            "distance",
            Box::new(|f| put(f, "entry_1/instrument_1/detector_1/distance", &[2], &[0.1f64, 0.2])),
            "varies between frames",
        ),
        (
            "negative",
            Box::new(|f| put_scalar(f, "entry_1/instrument_1/detector_1/distance", -0.1f64)),
            "must be a positive number",
        ),
        (
            "mask",
            Box::new(|f| put(f, "entry_1/instrument_1/detector_1/mask", &[3, 2], &[0u32; 6])),
            "does not fit frames of 2 × 3 pixels",
        ),
        (
            "orientation",
            Box::new(|f| put(f, "entry_1/sample_1/geometry_1/orientation", &[2, 6], &[1f64; 12])),
            "not the first two rows of a rotation matrix",
        ),
    ];
    for (name, extra, expected) in cases {
        let path = dir.path().join(format!("{name}.cxi"));
        {
            let file = hdf5::File::create(&path).unwrap();
            put(&file, "entry_1/data_1/data", &[2, 2, 3], &[1u16; 12]);
            extra(&file);
        }
        let msg = open_err(&path, None);
        assert!(
            msg.contains(&format!("{name}.cxi")) && msg.contains(expected),
            "{name}: {msg}"
        );
    }
}

#[test]
fn writer_refuses_bad_arguments_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.cxi");
    let good = CxiGeometry {
        distance_m: 0.2,
        pixel_size_m: 1e-4,
        photon_energy_ev: 4600.0,
    };
    let create = |rows, cols, g: Option<&CxiGeometry>, mask: Option<&[bool]>, ds: Option<&str>| {
        CxiWriter::create(&path, rows, cols, g, mask, ds, false)
            .err()
            .map(err_text)
    };
    let msg = create(0, 5, None, None, None).unwrap();
    assert!(msg.contains("0 × 5"), "{msg}");
    let msg = create(2, 2, None, Some(&[false; 3]), None).unwrap();
    assert!(msg.contains("3 mask values") && msg.contains("4 pixels"), "{msg}");
    let bad = CxiGeometry {
        distance_m: 0.0,
        ..good
    };
    let msg = create(2, 2, Some(&bad), None, None).unwrap();
    assert!(msg.contains("distance") && msg.contains("positive"), "{msg}");
    let msg = create(2, 2, None, None, Some("entry_1/instrument_1/detector_1/mask")).unwrap();
    assert!(msg.contains("collides"), "{msg}");
    let msg = create(2, 2, None, None, Some("cxi_version/data")).unwrap();
    assert!(msg.contains("collides"), "{msg}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing written");

    // Frames: whole frames only, poses for all frames or none.
    let mut writer = CxiWriter::create(&path, 2, 2, Some(&good), None, None, false).unwrap();
    let msg = err_text(writer.write_frames(&[0.0; 6]).unwrap_err());
    assert!(msg.contains("6 values are not whole frames of 2 × 2"), "{msg}");
    writer.write_frames(&[1.0; 8]).unwrap();
    let msg = err_text(
        writer
            .write_posed_frames(&[0.0; 4], &[[1.0, 0.0, 0.0, 0.0]])
            .unwrap_err(),
    );
    assert!(msg.contains("came without poses"), "{msg}");
    drop(writer);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a dropped writer leaves nothing"
    );

    let mut writer = CxiWriter::create(&path, 2, 2, None, None, None, false).unwrap();
    let msg = err_text(
        writer
            .write_posed_frames(&[0.0; 4], &[[2.0, 0.0, 0.0, 0.0]])
            .unwrap_err(),
    );
    assert!(msg.contains("not a unit quaternion"), "{msg}");
    let msg = err_text(
        writer
            .write_posed_frames(&[0.0; 8], &[[1.0, 0.0, 0.0, 0.0]])
            .unwrap_err(),
    );
    assert!(msg.contains("1 poses for 2 frames"), "{msg}");
    writer.write_posed_frames(&[0.0; 4], &[[1.0, 0.0, 0.0, 0.0]]).unwrap();
    let msg = err_text(writer.write_frames(&[0.0; 4]).unwrap_err());
    assert!(msg.contains("came with poses"), "{msg}");
    writer.finish().unwrap();

    // An existing file is kept unless overwrite is asked for.
    let before = std::fs::read(&path).unwrap();
    match CxiWriter::create(&path, 3, 3, None, None, None, false) {
        Err(FormatError::Exists { .. }) => {}
        other => panic!("expected Exists, got {:?}", other.err()),
    }
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let mut writer = CxiWriter::create(&path, 3, 3, None, None, Some("/a/b/frames"), true).unwrap();
    writer.write_frames(&[2.5; 9]).unwrap();
    writer.finish().unwrap();
    let reader = CxiReader::open(&path, Some("a/b/frames")).unwrap();
    assert_eq!(reader.read_frames(0..1).unwrap(), vec![2.5; 9]);
}
