"""Model components (backbones, heads, trackers) with official DVIS / DVIS++ state-dict keys."""
