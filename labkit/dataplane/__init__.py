"""Pure renderers: model -> nftables text, wiring plans and every kernel-visible name."""
