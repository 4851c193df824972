"""Model parts: ViCLIP, the CLIP tokenizer, and the text-to-video assembly (VAE, text encoder, denoiser)."""
