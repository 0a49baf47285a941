//! Adapter discovery and choice: `--adapter NAME` (substring) and `--backend`, or the best
//! adapter present (discrete > integrated > virtual > CPU).

use anyhow::{bail, Result};

/// Which adapter to open. Both fields are optional filters.
#[derive(Clone, Debug, Default)]
pub struct AdapterChoice {
    /// Case-insensitive substring of the adapter name.
    pub name: Option<String>,
    /// vulkan, metal, dx12 or gl.
    pub backend: Option<String>,
}

/// What `lskbb devices` prints for one adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub timestamp_query: bool,
    pub subgroups: bool,
    pub shader_f16: bool,
}

fn backends(choice: &AdapterChoice) -> Result<wgpu::Backends> {
    Ok(
        match choice
            .backend
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("") | Some("auto") => wgpu::Backends::all(),
            Some("vulkan") => wgpu::Backends::VULKAN,
            Some("metal") => wgpu::Backends::METAL,
            Some("dx12") => wgpu::Backends::DX12,
            Some("gl") => wgpu::Backends::GL,
            Some(other) => bail!("--backend '{other}' is not one of vulkan, metal, dx12, gl"),
        },
    )
}

/// On a headless Linux machine Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select`
/// asks libwayland for a display (wgpu enables `VK_KHR_wayland_surface` whenever the driver
/// offers it), and libwayland prints `error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment.` once per device enumeration: not lskbb's error, and nothing fails. When no
/// Wayland display can be reached (no `WAYLAND_SOCKET`, no absolute `WAYLAND_DISPLAY`, no
/// absolute `XDG_RUNTIME_DIR`), no X display is named and the user has not asked the layer for
/// a device (`MESA_VK_DEVICE_SELECT*`, `DRI_PRIME`), the layer can only order the devices, and
/// `adapters` ranks them itself, so it is turned off (`NODEVICE_SELECT=1`, the layer's own
/// switch). Any desktop session (Wayland or X11) keeps the layer as it was.
#[cfg(all(unix, not(target_os = "macos"), not(target_os = "android")))]
fn quiet_headless_device_select() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let absolute =
            |k: &str| std::env::var_os(k).is_some_and(|v| v.to_string_lossy().starts_with('/'));
        let set = |k: &str| std::env::var_os(k).is_some();
        let wayland =
            set("WAYLAND_SOCKET") || absolute("XDG_RUNTIME_DIR") || absolute("WAYLAND_DISPLAY");
        let keep = [
            "DISPLAY",
            "DRI_PRIME",
            "MESA_VK_DEVICE_SELECT",
            "MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE",
            "NODEVICE_SELECT",
        ]
        .iter()
        .any(|k| set(k));
        if !wayland && !keep {
            // Runs once, before the first Vulkan instance exists, so no driver thread is
            // reading the environment yet.
            std::env::set_var("NODEVICE_SELECT", "1");
        }
    });
}

fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    #[cfg(all(unix, not(target_os = "macos"), not(target_os = "android")))]
    quiet_headless_device_select();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = backends;
    wgpu::Instance::new(desc)
}

/// The backends to search: the chosen one, else `WGPU_BACKEND`, else the native APIs (Vulkan,
/// Metal, DX12) first and GL only when none of them has an adapter (probing GL without a
/// display prints warnings and GL is the slowest path).
fn enumerate(choice: &AdapterChoice) -> Result<Vec<wgpu::Adapter>> {
    if choice.backend.is_some() {
        let b = backends(choice)?;
        return Ok(pollster::block_on(instance(b).enumerate_adapters(b)));
    }
    let from_env = wgpu::Backends::from_env();
    if let Some(b) = from_env {
        return Ok(pollster::block_on(instance(b).enumerate_adapters(b)));
    }
    let primary = pollster::block_on(
        instance(wgpu::Backends::PRIMARY).enumerate_adapters(wgpu::Backends::PRIMARY),
    );
    if !primary.is_empty() {
        return Ok(primary);
    }
    Ok(pollster::block_on(
        instance(wgpu::Backends::GL).enumerate_adapters(wgpu::Backends::GL),
    ))
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

const NO_ADAPTER: &str = "no usable GPU adapter found. lskbb needs a Vulkan, Metal, DX12 or GL \
driver with compute shaders and 8 storage buffers per shader stage. \
On Linux without a GPU install Mesa's software Vulkan driver (lavapipe): \
`sudo apt-get install mesa-vulkan-drivers`; check with `vulkaninfo --summary`";

fn adapters(choice: &AdapterChoice) -> Result<Vec<wgpu::Adapter>> {
    let mut all = enumerate(choice)?;
    if let Some(name) = &choice.name {
        let want = name.to_lowercase();
        let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
        all.retain(|a| a.get_info().name.to_lowercase().contains(&want));
        if all.is_empty() {
            if names.is_empty() {
                bail!("{NO_ADAPTER}");
            }
            bail!(
                "--adapter '{name}' matches no adapter; present: {}",
                names.join(", ")
            );
        }
    }
    // The largest kernels (BatchNorm's normalize and grad_x) bind 8 storage buffers, the
    // WebGPU minimum that Vulkan, Metal and DX12 adapters meet; some GL ones do not.
    all.retain(|a| a.limits().max_storage_buffers_per_shader_stage >= 8);
    all.sort_by_key(|a| rank(a.get_info().device_type));
    Ok(all)
}

/// The adapter to open for `choice` (natively; a page asks WebGPU for its adapter).
#[cfg(not(target_arch = "wasm32"))]
pub fn select(choice: &AdapterChoice) -> Result<wgpu::Adapter> {
    match adapters(choice)?.into_iter().next() {
        Some(a) => Ok(a),
        None => bail!("{NO_ADAPTER}"),
    }
}

/// Every adapter that `choice` admits, best first.
pub fn list_adapters(choice: &AdapterChoice) -> Result<Vec<AdapterSummary>> {
    let list = adapters(choice)?;
    if list.is_empty() {
        bail!("{NO_ADAPTER}");
    }
    Ok(list
        .iter()
        .map(|a| {
            let i = a.get_info();
            let l = a.limits();
            let f = a.features();
            AdapterSummary {
                name: i.name,
                backend: format!("{:?}", i.backend),
                device_type: format!("{:?}", i.device_type),
                driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_buffer_size: l.max_buffer_size,
                max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
                subgroups: f.contains(wgpu::Features::SUBGROUP),
                shader_f16: f.contains(wgpu::Features::SHADER_F16),
            }
        })
        .collect())
}
