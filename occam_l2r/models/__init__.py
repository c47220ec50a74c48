"""Plain ``nn.Module``s and pure functions: backbones, metrics, fusion heads. No Lightning here."""
