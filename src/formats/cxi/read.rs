//! [`CxiReader`]: opens a CXI file, validates the frames' dataset, the geometry, the mask and the
//! poses before anything is read, and reads frames by hyperslab (layout in the parent module).

use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::types::TypeDescriptor;
use ndarray::IxDyn;

use super::{
    h5_error, link_exists, normalize_dataset_path, quaternion_from_cosines, CxiGeometry, CxiPartialGeometry,
    BAD_PIXEL_BITS, DEFAULT_DATASET, DETECTOR_MASK, DISTANCE, ENERGY, IMAGE_DATASET, JOULES_PER_EV, ORIENTATION,
    X_PIXEL_SIZE, Y_PIXEL_SIZE,
};
use crate::formats::FormatError;

/// Frames of mask read at once when a per-frame mask is combined.
const MASK_FRAMES_PER_READ: usize = 64;
/// Relative difference above which x and y pixel sizes are unequal.
const PIXEL_SIZE_TOLERANCE: f64 = 1e-9;

/// Reads the frames of a CXI file (see the module docs).
pub struct CxiReader {
    path: PathBuf,
    dataset_path: String,
    dataset: hdf5::Dataset,
    /// Rank of the frames' dataset: 2 (one frame) or 3.
    rank: usize,
    num_frames: usize,
    rows: usize,
    cols: usize,
    geometry: CxiPartialGeometry,
    mask: Option<Vec<bool>>,
    poses: Option<Vec<[f64; 4]>>,
    // Kept open for the lifetime of the reader (the dataset holds the file open too).
    _file: hdf5::File,
}

impl CxiReader {
    /// Opens `path` and validates the frames at `dataset_path` (default: `/entry_1/data_1/data`,
    /// then `/entry_1/image_1/data`), the geometry, the mask and the poses.
    pub fn open(path: impl AsRef<Path>, dataset_path: Option<&str>) -> Result<Self, FormatError> {
        let path = path.as_ref();
        if let Err(e) = std::fs::metadata(path) {
            return Err(FormatError::io(path, e));
        }
        let file = hdf5::File::open(path)
            .map_err(|e| FormatError::invalid(path, "file", format!("cannot be opened as an HDF5 (CXI) file: {e}")))?;
        let dataset_path = match dataset_path {
            Some(given) => {
                let name = normalize_dataset_path(path, given)?;
                if !link_exists(&file, &name) {
                    return Err(FormatError::invalid(
                        path,
                        format!("/{name}"),
                        format!("no such dataset; {}", describe_members(&file, &name)),
                    ));
                }
                name
            }
            None => [DEFAULT_DATASET, IMAGE_DATASET]
                .into_iter()
                .find(|name| link_exists(&file, name))
                .map(str::to_string)
                .ok_or_else(|| {
                    FormatError::invalid(
                        path,
                        format!("/{DEFAULT_DATASET}"),
                        format!(
                            "no frames at /{DEFAULT_DATASET} or /{IMAGE_DATASET}; give the path of the \
                             frames' dataset; {}",
                            describe_members(&file, "")
                        ),
                    )
                })?,
        };
        let field = format!("/{dataset_path}");
        let dataset = file.dataset(&dataset_path).map_err(|e| {
            let what = match file.group(&dataset_path) {
                Ok(group) => format!("a group, not a dataset; its members: {}", member_list(&group)),
                Err(_) => format!("not a dataset ({e})"),
            };
            FormatError::invalid(path, &field, what)
        })?;
        check_numeric(path, &field, &dataset)?;
        let shape = dataset.shape();
        let (rank, num_frames, rows, cols) = match shape[..] {
            [rows, cols] => (2, 1, rows, cols),
            [n, rows, cols] => (3, n, rows, cols),
            _ => {
                return Err(FormatError::invalid(
                    path,
                    &field,
                    format!(
                        "shape {shape:?}: frames must be (frames, rows, cols) or one frame (rows, cols); \
                         a {}-dimensional dataset is not a stack of frames",
                        shape.len()
                    ),
                ))
            }
        };
        if rows == 0 || cols == 0 || rows.checked_mul(cols).is_none() {
            return Err(FormatError::invalid(
                path,
                &field,
                format!("frames of {rows} × {cols} pixels"),
            ));
        }
        let mut reader = CxiReader {
            path: path.to_path_buf(),
            dataset_path,
            dataset,
            rank,
            num_frames,
            rows,
            cols,
            geometry: CxiPartialGeometry::default(),
            mask: None,
            poses: None,
            _file: file,
        };
        reader.geometry = reader.read_geometry()?;
        reader.mask = reader.read_mask()?;
        reader.poses = reader.read_poses()?;
        Ok(reader)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The frames' dataset path, without the leading `/`.
    pub fn dataset_path(&self) -> &str {
        &self.dataset_path
    }

    /// Frames in the file (1 for a two-dimensional dataset).
    pub fn num_frames(&self) -> usize {
        self.num_frames
    }

    /// (rows, cols) of a frame; rows run along y, columns along x.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The geometry when the file has all of distance, pixel size and photon energy.
    pub fn geometry(&self) -> Option<CxiGeometry> {
        let g = self.geometry;
        Some(CxiGeometry {
            distance_m: g.distance_m?,
            pixel_size_m: g.pixel_size_m?,
            photon_energy_ev: g.photon_energy_ev?,
        })
    }

    /// Each geometry field the file has (to fill the others from elsewhere).
    pub fn partial_geometry(&self) -> CxiPartialGeometry {
        self.geometry
    }

    /// Per pixel, row-major, true = bad (see the module docs for the bits), if the file has a mask.
    pub fn mask(&self) -> Option<Vec<bool>> {
        self.mask.clone()
    }

    /// The true pose of each frame as a quaternion (w, x, y, z), w ≥ 0, if the file has them.
    pub fn poses(&self) -> Option<Vec<[f64; 4]>> {
        self.poses.clone()
    }

    /// The frames in `frames`, frame after frame, rows × cols values each, converted to f32. Only
    /// those frames are read from the file.
    pub fn read_frames(&self, frames: Range<usize>) -> Result<Vec<f32>, FormatError> {
        let field = format!("/{}", self.dataset_path);
        if frames.start > frames.end || frames.end > self.num_frames {
            return Err(FormatError::invalid(
                &self.path,
                field,
                format!(
                    "frames {}..{} asked for, the file has {}",
                    frames.start, frames.end, self.num_frames
                ),
            ));
        }
        if frames.is_empty() {
            return Ok(Vec::new());
        }
        let array = if self.rank == 2 {
            self.dataset.read_slice::<f32, _, IxDyn>((.., ..))
        } else {
            self.dataset.read_slice::<f32, _, IxDyn>((frames, .., ..))
        }
        .map_err(|e| h5_error(&self.path, &field, e))?;
        let (values, offset) = array.into_raw_vec_and_offset();
        debug_assert!(offset.unwrap_or(0) == 0, "a freshly read array starts at its buffer");
        Ok(values)
    }

    fn read_geometry(&self) -> Result<CxiPartialGeometry, FormatError> {
        let distance_m = self.read_scalar(DISTANCE)?;
        let x = self.read_scalar(X_PIXEL_SIZE)?;
        let y = self.read_scalar(Y_PIXEL_SIZE)?;
        let pixel_size_m = match (x, y) {
            (Some(x), Some(y)) if (x - y).abs() > PIXEL_SIZE_TOLERANCE * x.abs().max(y.abs()) => {
                return Err(FormatError::invalid(
                    &self.path,
                    format!("/{X_PIXEL_SIZE}, /{Y_PIXEL_SIZE}"),
                    format!("pixels of {x} m × {y} m; only square pixels are supported"),
                ));
            }
            (Some(x), _) => Some(x),
            (None, y) => y,
        };
        let photon_energy_ev = match self.read_scalar(ENERGY)? {
            None => None,
            Some(e) if e < 1e-9 => Some(e / JOULES_PER_EV),
            Some(e) if e > 1.0 => Some(e),
            Some(e) => {
                return Err(FormatError::invalid(
                    &self.path,
                    format!("/{ENERGY}"),
                    format!("{e} is neither a photon energy in joules (< 1e-9) nor in eV (> 1)"),
                ))
            }
        };
        let geometry = CxiPartialGeometry {
            distance_m,
            pixel_size_m,
            photon_energy_ev,
        };
        for (name, value) in [
            (DISTANCE, distance_m),
            (X_PIXEL_SIZE, pixel_size_m),
            (ENERGY, photon_energy_ev),
        ] {
            if let Some(v) = value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(FormatError::invalid(
                    &self.path,
                    format!("/{name}"),
                    format!("{v}: must be a positive number"),
                ));
            }
        }
        Ok(geometry)
    }

    /// A number stored as a scalar or as one value per frame (all equal); None if absent.
    fn read_scalar(&self, name: &str) -> Result<Option<f64>, FormatError> {
        if !link_exists(&self._file, name) {
            return Ok(None);
        }
        let field = format!("/{name}");
        let dataset = self
            ._file
            .dataset(name)
            .map_err(|e| FormatError::invalid(&self.path, &field, format!("not a dataset ({e})")))?;
        check_numeric(&self.path, &field, &dataset)?;
        let size = dataset.size();
        if dataset.ndim() > 1 || (size != 1 && size != self.num_frames) {
            return Err(FormatError::invalid(
                &self.path,
                &field,
                format!(
                    "shape {:?}: expected a scalar or one value per frame ({})",
                    dataset.shape(),
                    self.num_frames
                ),
            ));
        }
        let values: Vec<f64> = dataset.read_raw().map_err(|e| h5_error(&self.path, &field, e))?;
        let first = *values
            .first()
            .ok_or_else(|| FormatError::invalid(&self.path, &field, "empty"))?;
        if let Some(other) = values.iter().find(|&&v| v != first) {
            return Err(FormatError::invalid(
                &self.path,
                &field,
                format!("varies between frames ({first} and {other}); one value for all frames is supported"),
            ));
        }
        Ok(Some(first))
    }

    /// The detector's mask, else the one beside the frames; (rows, cols), or per frame.
    fn read_mask(&self) -> Result<Option<Vec<bool>>, FormatError> {
        let beside = match self.dataset_path.rsplit_once('/') {
            Some((group, _)) => format!("{group}/mask"),
            None => "mask".to_string(),
        };
        let Some(name) = [DETECTOR_MASK, beside.as_str()]
            .into_iter()
            .find(|name| *name != self.dataset_path && link_exists(&self._file, name))
        else {
            return Ok(None);
        };
        let field = format!("/{name}");
        let dataset = self
            ._file
            .dataset(name)
            .map_err(|e| FormatError::invalid(&self.path, &field, format!("not a dataset ({e})")))?;
        let dtype = dataset.dtype().and_then(|t| t.to_descriptor());
        if !matches!(dtype, Ok(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_))) {
            return Err(FormatError::invalid(
                &self.path,
                &field,
                format!(
                    "type {}: a CXI mask is an integer bit field (0 = good pixel)",
                    describe_type(&dataset)
                ),
            ));
        }
        let (rows, cols) = (self.rows, self.cols);
        let shape = dataset.shape();
        let frames = match shape[..] {
            [r, c] if (r, c) == (rows, cols) => None,
            [n, r, c] if (r, c) == (rows, cols) && n >= 1 => Some(n),
            _ => {
                return Err(FormatError::invalid(
                    &self.path,
                    &field,
                    format!("shape {shape:?} does not fit frames of {rows} × {cols} pixels"),
                ))
            }
        };
        let bad_bits = |v: &i64| (*v as u64) & BAD_PIXEL_BITS != 0;
        let read = |sel: Option<Range<usize>>| {
            match sel {
                None => dataset.read_slice::<i64, _, IxDyn>((.., ..)),
                Some(r) => dataset.read_slice::<i64, _, IxDyn>((r, .., ..)),
            }
            .map_err(|e| h5_error(&self.path, &field, e))
        };
        let Some(n) = frames else {
            return Ok(Some(read(None)?.iter().map(bad_bits).collect()));
        };
        // One mask per frame: a pixel bad in any frame is bad.
        let mut mask = vec![false; rows * cols];
        let mut start = 0;
        while start < n {
            let end = n.min(start + MASK_FRAMES_PER_READ);
            let values = read(Some(start..end))?;
            for (i, v) in values.iter().enumerate() {
                if bad_bits(v) {
                    mask[i % (rows * cols)] = true;
                }
            }
            start = end;
        }
        Ok(Some(mask))
    }

    fn read_poses(&self) -> Result<Option<Vec<[f64; 4]>>, FormatError> {
        if !link_exists(&self._file, ORIENTATION) {
            return Ok(None);
        }
        let field = format!("/{ORIENTATION}");
        let dataset = self
            ._file
            .dataset(ORIENTATION)
            .map_err(|e| FormatError::invalid(&self.path, &field, format!("not a dataset ({e})")))?;
        check_numeric(&self.path, &field, &dataset)?;
        let shape = dataset.shape();
        let fits = match shape[..] {
            [6] => self.num_frames == 1,
            [n, 6] => n == self.num_frames,
            _ => false,
        };
        if !fits {
            return Err(FormatError::invalid(
                &self.path,
                &field,
                format!(
                    "shape {shape:?}: expected six direction cosines per frame, ({}, 6)",
                    self.num_frames
                ),
            ));
        }
        let values: Vec<f64> = dataset.read_raw().map_err(|e| h5_error(&self.path, &field, e))?;
        let mut poses = Vec::with_capacity(self.num_frames);
        for (d, row) in values.chunks_exact(6).enumerate() {
            let cosines: [f64; 6] = row.try_into().expect("chunks of 6");
            let q = quaternion_from_cosines(&cosines).ok_or_else(|| {
                FormatError::invalid(
                    &self.path,
                    format!("{field}[{d}]"),
                    format!("{cosines:?} are not the first two rows of a rotation matrix"),
                )
            })?;
            poses.push(q);
        }
        Ok(Some(poses))
    }
}

/// Refuses a dataset whose values are not integers or floating-point numbers.
fn check_numeric(path: &Path, field: &str, dataset: &hdf5::Dataset) -> Result<(), FormatError> {
    match dataset.dtype().and_then(|t| t.to_descriptor()) {
        Ok(TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) | TypeDescriptor::Float(_)) => Ok(()),
        _ => Err(FormatError::invalid(
            path,
            field,
            format!(
                "type {}: expected integer or floating-point numbers",
                describe_type(dataset)
            ),
        )),
    }
}

fn describe_type(dataset: &hdf5::Dataset) -> String {
    match dataset.dtype().and_then(|t| t.to_descriptor()) {
        Ok(t) => format!("{t:?}"),
        Err(e) => format!("unknown ({e})"),
    }
}

fn member_list(group: &hdf5::Group) -> String {
    match group.member_names() {
        Ok(names) if names.is_empty() => "none".to_string(),
        Ok(names) => names.join(", "),
        Err(e) => format!("unreadable ({e})"),
    }
}

/// The members of the deepest existing group along `name`, and the top-level ones.
fn describe_members(file: &hdf5::File, name: &str) -> String {
    let top = format!("top-level members: {}", member_list(file));
    let mut deepest = None;
    let mut prefix = String::new();
    for component in name.split('/').filter(|c| !c.is_empty()) {
        let next = if prefix.is_empty() {
            component.to_string()
        } else {
            format!("{prefix}/{component}")
        };
        if !link_exists(file, &next) {
            break;
        }
        match file.group(&next) {
            Ok(group) => {
                deepest = Some((next.clone(), group));
                prefix = next;
            }
            Err(_) => break,
        }
    }
    match deepest {
        Some((at, group)) => format!("{top}; members of /{at}: {}", member_list(&group)),
        None => top,
    }
}
