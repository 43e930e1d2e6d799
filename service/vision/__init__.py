"""Multimodal input: the --mmproj projector (mmproj), image preprocessing (image), the vision encoder
(encoder) and multimodal prompts (media)."""
