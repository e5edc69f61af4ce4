"""Energy and area reference tables (ERT/ART): per-action energies of every component."""
