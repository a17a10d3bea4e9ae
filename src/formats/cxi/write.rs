//! [`CxiWriter`]: writes frames, geometry, mask and poses in Condor's CXI layout (parent module),
//! into a temporary file that [`CxiWriter::finish`] moves into place.

use std::fs;
use std::path::{Path, PathBuf};

use ndarray::ArrayView3;

use super::{
    cosines_from_quaternion, h5_error, normalize_dataset_path, CxiGeometry, CXI_VERSION, DEFAULT_DATASET, DETECTOR,
    DETECTOR_MASK, DISTANCE, ENERGY, JOULES_PER_EV, ORIENTATION, PIXEL_IS_INVALID, SAMPLE_GEOMETRY, X_PIXEL_SIZE,
    Y_PIXEL_SIZE,
};
use crate::formats::{place_file, temporary_path, FormatError};

/// Bytes a chunk of frames aims at (whole frames, at most [`MAX_CHUNK_FRAMES`]).
const CHUNK_BYTES: usize = 1 << 20;
const MAX_CHUNK_FRAMES: usize = 64;
/// The version written to `/cxi_version`: CXI 1.6.
const VERSION: i32 = 160;
/// Deflate level of the frames (photon counts are mostly zeros and compress well).
const DEFLATE_LEVEL: u8 = 4;

/// Writes a CXI file frame by frame (see the module docs).
pub struct CxiWriter {
    path: PathBuf,
    tmp: PathBuf,
    overwrite: bool,
    dataset_path: String,
    rows: usize,
    cols: usize,
    frames: usize,
    /// Direction cosines per frame, when the frames come with poses.
    cosines: Option<Vec<[f64; 6]>>,
    /// Open until `finish` (the dataset first: it holds the file open).
    dataset: Option<hdf5::Dataset>,
    file: Option<hdf5::File>,
}

impl CxiWriter {
    /// Starts `path` for frames of `rows` × `cols` pixels at `dataset_path` (default
    /// `/entry_1/data_1/data`), with the geometry and the mask (row-major, true = bad) when given.
    /// Refuses an existing file unless `overwrite`. Nothing appears at `path` before `finish`.
    pub fn create(
        path: impl AsRef<Path>,
        rows: usize,
        cols: usize,
        geometry: Option<&CxiGeometry>,
        mask: Option<&[bool]>,
        dataset_path: Option<&str>,
        overwrite: bool,
    ) -> Result<Self, FormatError> {
        let path = path.as_ref();
        let dataset_path = normalize_dataset_path(path, dataset_path.unwrap_or(DEFAULT_DATASET))?;
        let pixels = rows.checked_mul(cols).filter(|&p| p > 0 && p <= i32::MAX as usize);
        let Some(pixels) = pixels else {
            return Err(FormatError::invalid(
                path,
                format!("/{dataset_path}"),
                format!("frames of {rows} × {cols} pixels (each side at least 1, at most 2³¹ − 1 pixels)"),
            ));
        };
        if let Some(geometry) = geometry {
            geometry.validate(path)?;
        }
        if let Some(mask) = mask.filter(|m| m.len() != pixels) {
            return Err(FormatError::invalid(
                path,
                format!("/{DETECTOR_MASK}"),
                format!(
                    "{} mask values for frames of {rows} × {cols} = {pixels} pixels",
                    mask.len()
                ),
            ));
        }
        let mask_link = (dataset_path == DEFAULT_DATASET).then_some("entry_1/data_1/mask");
        let reserved = [
            CXI_VERSION,
            DISTANCE,
            X_PIXEL_SIZE,
            Y_PIXEL_SIZE,
            ENERGY,
            DETECTOR_MASK,
            ORIENTATION,
        ];
        if let Some(r) = reserved.iter().chain(&mask_link).find(|r| {
            **r == dataset_path
                || r.starts_with(&format!("{dataset_path}/"))
                || dataset_path.starts_with(&format!("{r}/"))
        }) {
            return Err(FormatError::invalid(
                path,
                format!("/{dataset_path}"),
                format!("collides with /{r}, where the file keeps other data; choose another dataset path"),
            ));
        }
        if !overwrite && path.exists() {
            return Err(FormatError::Exists {
                path: path.to_path_buf(),
            });
        }

        let tmp = temporary_path(path, "cxi");
        let file = hdf5::File::create(&tmp).map_err(|e| h5_error(path, "file", e))?;
        let mut writer = CxiWriter {
            path: path.to_path_buf(),
            tmp,
            overwrite,
            dataset_path,
            rows,
            cols,
            frames: 0,
            cosines: None,
            dataset: None,
            file: Some(file),
        };
        writer.start(geometry, mask, mask_link)?;
        Ok(writer)
    }

    /// Writes everything but the frames and poses, and creates the empty frames' dataset.
    fn start(
        &mut self,
        geometry: Option<&CxiGeometry>,
        mask: Option<&[bool]>,
        mask_link: Option<&str>,
    ) -> Result<(), FormatError> {
        let path = self.path.clone();
        let file = self.file.as_ref().expect("open until finish");
        let scalar = |name: &str, value: f64| -> Result<(), FormatError> {
            let (group, leaf) = name.rsplit_once('/').expect("geometry paths have a group");
            group_at(&path, file, group)?
                .new_dataset::<f64>()
                .shape(())
                .create(leaf)
                .and_then(|d| d.write_scalar(&value))
                .map_err(|e| h5_error(&path, &format!("/{name}"), e))
        };
        file.new_dataset::<i32>()
            .shape(())
            .create(CXI_VERSION)
            .and_then(|d| d.write_scalar(&VERSION))
            .map_err(|e| h5_error(&path, &format!("/{CXI_VERSION}"), e))?;
        if let Some(g) = geometry {
            scalar(DISTANCE, g.distance_m)?;
            scalar(X_PIXEL_SIZE, g.pixel_size_m)?;
            scalar(Y_PIXEL_SIZE, g.pixel_size_m)?;
            scalar(ENERGY, g.photon_energy_ev * JOULES_PER_EV)?;
        }
        if let Some(mask) = mask {
            let values: Vec<u32> = mask.iter().map(|&bad| if bad { PIXEL_IS_INVALID } else { 0 }).collect();
            let view = ndarray::ArrayView2::from_shape((self.rows, self.cols), &values).expect("length checked");
            group_at(&path, file, DETECTOR)?
                .new_dataset_builder()
                .with_data(view)
                .create("mask")
                .map_err(|e| h5_error(&path, &format!("/{DETECTOR_MASK}"), e))?;
            if let Some(link) = mask_link {
                let (group, leaf) = link.rsplit_once('/').expect("a group");
                group_at(&path, file, group)?
                    .link_hard(&format!("/{DETECTOR_MASK}"), leaf)
                    .map_err(|e| h5_error(&path, &format!("/{link}"), e))?;
            }
        }
        let field = format!("/{}", self.dataset_path);
        let (group, leaf) = match self.dataset_path.rsplit_once('/') {
            Some((group, leaf)) => (group_at(&path, file, group)?, leaf),
            None => ((**file).clone(), self.dataset_path.as_str()),
        };
        let frame_bytes = self.rows * self.cols * 4;
        let chunk_frames = (CHUNK_BYTES / frame_bytes).clamp(1, MAX_CHUNK_FRAMES);
        let mut builder = group.new_dataset::<f32>();
        if hdf5::filters::deflate_available() {
            builder = builder.shuffle().deflate(DEFLATE_LEVEL);
        }
        let dataset = builder
            .chunk((chunk_frames, self.rows, self.cols))
            .shape((0.., self.rows, self.cols))
            .create(leaf)
            .map_err(|e| h5_error(&path, &field, e))?;
        self.dataset = Some(dataset);
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Appends whole frames (a multiple of rows × cols values, frame after frame).
    pub fn write_frames(&mut self, frames: &[f32]) -> Result<(), FormatError> {
        if self.cosines.is_some() {
            return Err(self.invalid(
                format!("/{ORIENTATION}"),
                format!(
                    "the first {} frames came with poses; write the rest with their poses too",
                    self.frames
                ),
            ));
        }
        self.append(frames)
    }

    /// Appends whole frames with the true pose of each, a unit quaternion (w, x, y, z). Either
    /// every frame of a file has a pose or none has.
    pub fn write_posed_frames(&mut self, frames: &[f32], poses: &[[f64; 4]]) -> Result<(), FormatError> {
        if self.frames > 0 && self.cosines.is_none() {
            return Err(self.invalid(
                format!("/{ORIENTATION}"),
                format!(
                    "the first {} frames came without poses; a file has poses for all frames or none",
                    self.frames
                ),
            ));
        }
        let count = frames.len() / (self.rows * self.cols);
        if poses.len() != count {
            return Err(self.invalid(
                format!("/{ORIENTATION}"),
                format!("{} poses for {count} frames", poses.len()),
            ));
        }
        let mut cosines = Vec::with_capacity(poses.len());
        for (i, &q) in poses.iter().enumerate() {
            cosines.push(cosines_from_quaternion(q).ok_or_else(|| {
                self.invalid(
                    format!("/{ORIENTATION}[{}]", self.frames + i),
                    format!("{q:?} is not a unit quaternion (w, x, y, z)"),
                )
            })?);
        }
        self.append(frames)?;
        self.cosines.get_or_insert_with(Vec::new).extend(cosines);
        Ok(())
    }

    fn append(&mut self, frames: &[f32]) -> Result<(), FormatError> {
        let field = format!("/{}", self.dataset_path);
        let pixels = self.rows * self.cols;
        if frames.len() % pixels != 0 {
            return Err(self.invalid(
                &field,
                format!(
                    "{} values are not whole frames of {} × {} pixels",
                    frames.len(),
                    self.rows,
                    self.cols
                ),
            ));
        }
        let count = frames.len() / pixels;
        if count == 0 {
            return Ok(());
        }
        let total = self
            .frames
            .checked_add(count)
            .ok_or_else(|| self.invalid(&field, "frame count overflows".to_string()))?;
        let dataset = self.dataset.as_ref().expect("open until finish");
        let view = ArrayView3::from_shape((count, self.rows, self.cols), frames).expect("length checked");
        dataset
            .resize((total, self.rows, self.cols))
            .and_then(|_| dataset.write_slice(view, (self.frames..total, .., ..)))
            .map_err(|e| h5_error(&self.path, &field, e))?;
        self.frames = total;
        Ok(())
    }

    fn invalid(&self, field: impl Into<String>, reason: String) -> FormatError {
        FormatError::invalid(&self.path, field, reason)
    }

    /// Writes the poses, closes the file and moves it to the target; returns the frames written.
    pub fn finish(mut self) -> Result<usize, FormatError> {
        let path = self.path.clone();
        if let Some(cosines) = self.cosines.take() {
            let file = self.file.as_ref().expect("open until finish");
            let flat: Vec<f64> = cosines.iter().flatten().copied().collect();
            let view = ndarray::ArrayView2::from_shape((cosines.len(), 6), &flat).expect("six per pose");
            group_at(&path, file, SAMPLE_GEOMETRY)?
                .new_dataset_builder()
                .with_data(view)
                .create("orientation")
                .map_err(|e| h5_error(&path, &format!("/{ORIENTATION}"), e))?;
        }
        drop(self.dataset.take());
        let file = self.file.take().expect("open until finish");
        file.flush()
            .and_then(|_| file.close())
            .map_err(|e| h5_error(&path, "file", e))?;
        fs::File::open(&self.tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| FormatError::io(&path, e))?;
        place_file(&self.tmp, &path, self.overwrite)?;
        Ok(self.frames)
    }
}

impl Drop for CxiWriter {
    fn drop(&mut self) {
        drop(self.dataset.take());
        drop(self.file.take());
        let _ = fs::remove_file(&self.tmp);
    }
}

/// The group `name` (from the root), created with its parents where missing.
fn group_at(path: &Path, file: &hdf5::File, name: &str) -> Result<hdf5::Group, FormatError> {
    let mut group: hdf5::Group = (**file).clone();
    for component in name.split('/') {
        group = if group.link_exists(component) {
            group.group(component)
        } else {
            group.create_group(component)
        }
        .map_err(|e| h5_error(path, &format!("/{name}"), e))?;
    }
    Ok(group)
}
