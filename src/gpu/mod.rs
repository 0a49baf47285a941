//! The GPU context: adapter choice, device, cached pipelines and bind-group layouts, a buffer
//! pool and a command recorder that batches every dispatch of a step into one submission.

mod adapter;
mod oneshot;
mod pool;
mod recorder;
mod texels;
mod tune;

pub use adapter::{list_adapters, AdapterChoice, AdapterSummary};
pub use pool::GpuBuffer;
pub use recorder::KernelTime;
pub use texels::{texel_floats, Texels, TEXEL_BINDING, TEXEL_ROW};
pub use tune::TunedChoice;

use anyhow::{anyhow, bail, Context, Result};
use pool::Pool;
use recorder::{Command, Profiler, Recorder};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes between two parameter blocks in the uniform arena (WebGPU's largest required
/// uniform offset alignment, so it is valid on every adapter).
pub const PARAM_STRIDE: u64 = 256;

/// A compute kernel: one entry point of one WGSL source. The name identifies the source
/// in the pipeline cache.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub source: &'static str,
    pub entry: &'static str,
}

/// A lean pool returns cached buffers to the driver (a wait for the GPU) only to make room
/// for a buffer at least this large: small ones are created right away, and what they add
/// up to stays small next to the activations.
const LEAN_TRIM_MIN: u64 = 1 << 20;

/// How a GPU error's message starts when the driver ran out of memory, and when the device
/// was lost: [`crate::app::Error`] tells these apart from other GPU errors by them.
pub const OUT_OF_MEMORY: &str = "GPU out of memory";
pub const DEVICE_LOST: &str = "GPU device lost";

/// Workgroup size used by every one-dimensional kernel (`@workgroup_size(256)`).
pub const WG: u32 = 256;

/// The GPU and everything cached on it. Cheap to share: hold it in an `Arc`.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<wgpu::ComputePipeline>>>,
    layouts: Mutex<HashMap<(usize, usize, usize), Arc<wgpu::BindGroupLayout>>>,
    pool: Mutex<Pool>,
    lean: std::sync::atomic::AtomicBool,
    trims: std::sync::atomic::AtomicU64,
    rec: Mutex<Recorder>,
    tuning: Mutex<tune::Tuning>,
    error: Arc<Mutex<Option<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Gpu {
    /// Opens the adapter chosen by `choice` with the adapter's own limits.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(choice: &AdapterChoice) -> Result<Arc<Gpu>> {
        let adapter = adapter::select(choice)?;
        pollster::block_on(Self::open(&adapter, adapter.limits()))
    }

    /// Opens `adapter` with `limits` and the features the kernels use where it has them
    /// (timestamps, subgroups). In a browser, pass `wgpu::Limits::default()` (WebGPU's
    /// defaults, which every adapter grants) unless the page needs more.
    pub async fn open(adapter: &wgpu::Adapter, limits: wgpu::Limits) -> Result<Arc<Gpu>> {
        let info = adapter.get_info();
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("lskbb"),
                required_features: features,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .with_context(|| format!("opening GPU device on adapter '{}'", info.name))?;
        Ok(Self::from_device(device, queue, info))
    }

    /// Runs on a device the application already has (its own limits and features decide
    /// which kernels are used). lskbb installs its uncaptured-error and device-lost handlers
    /// on it, so that GPU errors come back as `Err` from lskbb's calls.
    pub fn from_device(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
    ) -> Arc<Gpu> {
        let limits = device.limits();
        let features = device.features();
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = lock(&sink);
            if slot.is_none() {
                *slot = Some(match e {
                    wgpu::Error::OutOfMemory { .. } => format!("{OUT_OF_MEMORY}: {e}"),
                    e => e.to_string(),
                });
            }
        }));
        let lost = error.clone();
        device.set_device_lost_callback(move |reason, msg| {
            *lock(&lost) = Some(format!("{DEVICE_LOST} ({reason:?}): {msg}"));
        });
        let rec = Recorder::new(&device);
        Arc::new(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
            pool: Mutex::new(Pool::default()),
            lean: std::sync::atomic::AtomicBool::new(false),
            trims: std::sync::atomic::AtomicU64::new(0),
            rec: Mutex::new(rec),
            tuning: Mutex::new(tune::Tuning::default()),
            error,
        })
    }

    /// Threads of a CPU driver (lavapipe runs one workgroup per thread, `LP_NUM_THREADS` or
    /// one per core), or `None` on a GPU. Kernels size their grids from it: a CPU gains
    /// nothing from more workgroups than a few per thread, and pays for every partial result
    /// that has to be merged.
    pub fn cpu_threads(&self) -> Option<usize> {
        if self.info.device_type != wgpu::DeviceType::Cpu {
            return None;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(
            std::env::var("LP_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&t| t > 0)
                .unwrap_or(cores),
        )
    }

    /// A one-line description: adapter name, backend and device type.
    /// A browser may keep the name and driver to itself: then only what it says is shown.
    pub fn describe(&self) -> String {
        let name = match self.info.name.as_str() {
            "" => "unnamed adapter",
            n => n,
        };
        let driver = format!("{} {}", self.info.driver, self.info.driver_info);
        let driver = match driver.trim() {
            "" => String::new(),
            d => format!(", driver {d}"),
        };
        format!(
            "{name} ({:?}, {:?}{driver})",
            self.info.backend, self.info.device_type
        )
    }

    /// The first GPU error seen since the last check (validation, out of memory, device lost).
    pub fn check(&self) -> Result<()> {
        match lock(&self.error).take() {
            Some(e) => Err(anyhow!("GPU error on '{}': {e}", self.info.name)),
            None => Ok(()),
        }
    }

    /// The alignment of a view's start in its buffer ([`GpuBuffer::view`]): the adapter's
    /// storage-binding offset alignment (256 bytes on most GPUs).
    pub fn view_alignment(&self) -> u64 {
        u64::from(self.limits.min_storage_buffer_offset_alignment).max(4)
    }

    /// The first f32 element at or past `elems` where a view can start: where a second
    /// tensor packed after `elems` values into one buffer begins.
    pub fn view_start(&self, elems: usize) -> usize {
        elems.next_multiple_of((self.view_alignment() / 4) as usize)
    }

    /// A storage buffer of at least `bytes` bytes from the pool (contents undefined).
    pub(crate) fn alloc(self: &Arc<Self>, bytes: u64) -> Result<Arc<GpuBuffer>> {
        let bytes = bytes.max(4);
        let max = self.limits.max_storage_buffer_binding_size;
        if bytes > max || bytes > self.limits.max_buffer_size {
            bail!(
                "a tensor of {bytes} bytes is larger than this adapter's largest storage buffer \
                 ({max} bytes on '{}'); use a smaller batch or image size",
                self.info.name
            );
        }
        let size = pool::size_class(bytes);
        let lean = self.lean.load(std::sync::atomic::Ordering::Relaxed);
        let trim = {
            let mut pool = lock(&self.pool);
            if let Some((buf, class)) = pool.take(size, lean) {
                return Ok(GpuBuffer::new(self.clone(), buf, class));
            }
            lean && size >= LEAN_TRIM_MIN && pool.can_trim(size)
        };
        if trim {
            self.trim_for(size)?;
        }
        let (buf, caught) = self.catching(wgpu::ErrorFilter::OutOfMemory, || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        if let Some(e) = caught {
            bail!(
                "{OUT_OF_MEMORY} allocating {size} bytes on '{}' ({} bytes already held): {e}",
                self.info.name,
                lock(&self.pool).held()
            );
        }
        lock(&self.pool).created(size);
        Ok(GpuBuffer::new(self.clone(), buf, size))
    }

    /// Returns cached buffers to the driver until `size` bytes are free. The recorded
    /// commands may still use those buffers, and the driver frees a buffer only once its last
    /// use has run: so this submits the recording, drops the buffers and waits for the GPU,
    /// after which the memory is really free (a dropped buffer otherwise lives on until the
    /// step's single submission ends, and the memory held would only grow).
    fn trim_for(&self, size: u64) -> Result<()> {
        self.flush()?;
        lock(&self.pool).trim_for(size);
        self.trims
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.wait()
    }

    pub(crate) fn release(&self, buf: wgpu::Buffer, size: u64) {
        lock(&self.pool).give(size, buf);
    }

    /// Bytes of GPU memory held by the engine (live tensors and the pool's cached buffers)
    /// now and at its peak.
    pub fn memory(&self) -> (u64, u64) {
        let p = lock(&self.pool);
        (p.held(), p.peak())
    }

    /// With `on`, an allocation that misses its size class takes an idle buffer up to twice
    /// its size, or else (from LEAN_TRIM_MIN up) returns cached buffers of other sizes to the
    /// driver: the memory held stays near the live peak, at the cost of creating buffers and
    /// of a wait for the GPU per trim ([`Gpu::trims`]) during steady training.
    pub fn set_lean_pool(&self, on: bool) {
        self.lean.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times the lean pool has returned cached buffers to the driver.
    pub fn trims(&self) -> u64 {
        self.trims.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Compute passes, and copies and clears, submitted so far (every run of dispatches
    /// between two copies or clears is one pass; a profiled dispatch gets its own).
    pub fn command_counts(&self) -> (u64, u64) {
        let rec = lock(&self.rec);
        (rec.passes, rec.transfers)
    }

    /// Bytes behind live tensors now and at the peak (without the pool's cache).
    pub fn memory_in_use(&self) -> (u64, u64) {
        lock(&self.pool).in_use()
    }

    fn layout(&self, reads: usize, writes: usize, textures: usize) -> Arc<wgpu::BindGroupLayout> {
        let mut layouts = lock(&self.layouts);
        layouts
            .entry((reads, writes, textures))
            .or_insert_with(|| {
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: None,
                    },
                    count: None,
                }];
                for i in 0..reads + writes {
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding: 1 + i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage {
                                read_only: i < reads,
                            },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    });
                }
                for i in 0..textures {
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding: TEXEL_BINDING + i as u32,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Texture {
                            sample_type: wgpu::TextureSampleType::Float { filterable: false },
                            view_dimension: wgpu::TextureViewDimension::D2,
                            multisampled: false,
                        },
                        count: None,
                    });
                }
                Arc::new(
                    self.device
                        .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                            label: None,
                            entries: &entries,
                        }),
                )
            })
            .clone()
    }

    fn pipeline(
        &self,
        k: &Kernel,
        [reads, writes, textures]: [usize; 3],
    ) -> Result<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = lock(&self.pipelines).get(&(k.name, k.entry)) {
            return Ok(p.clone());
        }
        let layout = self.layout(reads, writes, textures);
        let (pipe, caught) = self.catching(wgpu::ErrorFilter::Validation, || {
            self.build_pipeline(k, &layout)
        });
        if let Some(e) = caught {
            bail!("building kernel {}::{}: {e}", k.name, k.entry);
        }
        let pipe = Arc::new(pipe);
        lock(&self.pipelines).insert((k.name, k.entry), pipe.clone());
        Ok(pipe)
    }

    /// The shader module (cached) and compute pipeline of `k` with `layout`.
    fn build_pipeline(&self, k: &Kernel, layout: &wgpu::BindGroupLayout) -> wgpu::ComputePipeline {
        let module = lock(&self.modules)
            .entry(k.name)
            .or_insert_with(|| {
                self.device
                    .create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(k.name),
                        source: wgpu::ShaderSource::Wgsl(k.source.into()),
                    })
            })
            .clone();
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            });
        self.device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(k.entry),
                layout: Some(&pl),
                module: &module,
                entry_point: Some(k.entry),
                compilation_options: Default::default(),
                cache: None,
            })
    }

    /// Runs `f` and returns the error of kind `filter` it raised, if any. Natively an error
    /// scope catches it and is waited for. In a browser that answer arrives only through the
    /// event loop, so no scope is pushed: the error reaches [`Gpu::check`] through the
    /// uncaptured-error handler, with the browser's whole message (a shader's compile log).
    fn catching<T>(
        &self,
        filter: wgpu::ErrorFilter,
        f: impl FnOnce() -> T,
    ) -> (T, Option<wgpu::Error>) {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let scope = self.device.push_error_scope(filter);
            let out = f();
            (out, pollster::block_on(scope.pop()))
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = filter;
            (f(), None)
        }
    }

    /// Records one dispatch of `k` with a parameter block, read-only inputs and read-write
    /// outputs (bindings 0, 1.., then the outputs), on `groups` workgroups.
    pub fn dispatch(
        &self,
        k: &Kernel,
        params: &[u8],
        reads: &[&GpuBuffer],
        writes: &[&GpuBuffer],
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_with(k, params, reads, writes, &[], groups)
    }

    /// [`Gpu::dispatch`] with textures too, bound from [`TEXEL_BINDING`] on.
    pub fn dispatch_with(
        &self,
        k: &Kernel,
        params: &[u8],
        reads: &[&GpuBuffer],
        writes: &[&GpuBuffer],
        textures: &[&Texels],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            bail!(
                "kernel {}::{} needs {groups:?} workgroups, over this adapter's {max} per dimension",
                k.name,
                k.entry
            );
        }
        let counts = [reads.len(), writes.len(), textures.len()];
        let pipe = self.pipeline(k, counts)?;
        let layout = self.layout(counts[0], counts[1], counts[2]);
        let mut rec = lock(&self.rec);
        if rec.full() {
            rec.submit(&self.device, &self.queue)?;
        }
        let offset = rec.push_params(params)?;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: rec.arena(),
                offset: 0,
                size: wgpu::BufferSize::new(PARAM_STRIDE),
            }),
        }];
        for (i, b) in reads.iter().chain(writes.iter()).enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: b.binding(),
            });
        }
        for (i, t) in textures.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: TEXEL_BINDING + i as u32,
                resource: wgpu::BindingResource::TextureView(t.view()),
            });
        }
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &layout,
            entries: &entries,
        });
        rec.push(Command::Dispatch {
            pipe,
            bind,
            offset,
            groups,
            label: (k.name, k.entry),
        });
        Ok(())
    }

    /// Records a fill of `buf` with zeros.
    pub fn zero(&self, buf: &GpuBuffer) {
        lock(&self.rec).push(Command::Clear {
            buf: buf.buffer().clone(),
            offset: buf.offset(),
            bytes: buf.size(),
        });
    }

    /// Records a copy of `bytes` bytes between two buffers.
    pub fn copy(&self, src: &GpuBuffer, src_off: u64, dst: &GpuBuffer, dst_off: u64, bytes: u64) {
        lock(&self.rec).push(Command::Copy {
            src: src.buffer().clone(),
            src_off: src.offset() + src_off,
            dst: dst.buffer().clone(),
            dst_off: dst.offset() + dst_off,
            bytes,
        });
    }

    /// Submits everything recorded so far as one command buffer.
    pub fn flush(&self) -> Result<()> {
        let mut rec = lock(&self.rec);
        let submitted = rec.submit(&self.device, &self.queue);
        drop(rec);
        self.check()?;
        submitted
    }

    /// Submits everything recorded so far and waits until the GPU has finished it.
    pub fn finish(&self) -> Result<()> {
        self.flush()?;
        self.wait()?;
        self.check()
    }

    /// Waits until the GPU has run every submission (and the driver has freed the buffers
    /// those were the last users of).
    fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(drop)
            .map_err(|e| anyhow!("waiting for the GPU on '{}': {e}", self.info.name))
    }

    /// Whether the adapter can time kernels ([`Gpu::set_profiling`]).
    pub fn profiling_supported(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Turns kernel timing on or off. While on, every dispatch runs in its own compute pass
    /// between two GPU timestamps and each submission waits for the GPU, so profiled runs are
    /// slower than plain ones; off (the default) costs nothing. Turning it on clears the totals.
    /// Work recorded before the switch is submitted first and is not timed.
    pub fn set_profiling(&self, on: bool) -> Result<()> {
        if on && !self.profiling_supported() {
            bail!(
                "adapter '{}' has no timestamp queries (TIMESTAMP_QUERY), so kernels cannot be timed",
                self.info.name
            );
        }
        self.flush()?;
        lock(&self.rec).profiler = on.then(|| Profiler::new(&self.device, &self.queue));
        Ok(())
    }

    /// GPU time per kernel family (source name and entry point) since profiling was turned on,
    /// longest first; pending work is submitted and timed first. Empty when profiling is off.
    pub fn kernel_times(&self) -> Result<Vec<KernelTime>> {
        self.flush()?;
        Ok(lock(&self.rec)
            .profiler
            .as_ref()
            .map(Profiler::kernel_times)
            .unwrap_or_default())
    }

    /// Writes `data` into `buf`. Pending work is submitted first, so that earlier commands
    /// that read a recycled buffer see its old contents.
    pub fn write(&self, buf: &GpuBuffer, data: &[u8]) -> Result<()> {
        self.flush()?;
        if data.is_empty() {
            return Ok(());
        }
        let padded;
        let bytes = if data.len().is_multiple_of(4) {
            data
        } else {
            padded = [data, &[0u8; 3][..4 - data.len() % 4]].concat();
            &padded
        };
        self.queue.write_buffer(buf.buffer(), buf.offset(), bytes);
        Ok(())
    }

    /// Reads the first `bytes` bytes of `buf` back (waits for the GPU).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(&self, buf: &GpuBuffer, bytes: u64) -> Result<Vec<u8>> {
        pollster::block_on(self.read_async(buf, bytes))
    }

    /// In a browser a readback completes only once control returns to the page's event
    /// loop: there, use [`Gpu::read_async`].
    #[cfg(target_arch = "wasm32")]
    pub fn read(&self, _buf: &GpuBuffer, _bytes: u64) -> Result<Vec<u8>> {
        bail!("a blocking GPU readback cannot complete in a browser; use the async readback (read_async, Tensor::to_f32_async)")
    }

    /// Reads the first `bytes` bytes of `buf` back once the GPU has run everything recorded
    /// before. Natively the wait happens inside; in a browser the future resolves when the
    /// page's event loop has mapped the buffer.
    pub async fn read_async(&self, buf: &GpuBuffer, bytes: u64) -> Result<Vec<u8>> {
        let padded = bytes.div_ceil(4) * 4;
        if padded == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut rec = lock(&self.rec);
            rec.push(Command::Copy {
                src: buf.buffer().clone(),
                src_off: buf.offset(),
                dst: staging.clone(),
                dst_off: 0,
                bytes: padded,
            });
            rec.submit(&self.device, &self.queue)?;
        }
        let (mapped, on_mapped) = oneshot::channel();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| on_mapped.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.wait()?;
        let result = mapped.await;
        self.check()?;
        result
            .ok_or_else(|| anyhow!("GPU readback was cancelled on '{}'", self.info.name))?
            .map_err(|e| anyhow!("mapping a GPU buffer for readback: {e}"))?;
        let out = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| anyhow!("reading a mapped GPU buffer: {e}"))?[..bytes as usize]
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}

/// Workgroup counts for `n` threads of a one-dimensional kernel with [`WG`] threads per group:
/// spread over x and y so that neither exceeds 65535. Kernels recover the linear index as
/// `gid.x + gid.y * nwg.x * 256`.
pub fn grid(n: usize) -> [u32; 3] {
    let groups = n.div_ceil(WG as usize) as u32;
    if groups <= 65535 {
        [groups, 1, 1]
    } else {
        let y = groups.div_ceil(65535);
        [groups.div_ceil(y), y, 1]
    }
}

/// Workgroup counts for `n` workgroups (one per output, for reductions), spread like [`grid`].
pub fn groups(n: usize) -> [u32; 3] {
    let g = n as u32;
    if g <= 65535 {
        [g, 1, 1]
    } else {
        let y = g.div_ceil(65535);
        [g.div_ceil(y), y, 1]
    }
}
