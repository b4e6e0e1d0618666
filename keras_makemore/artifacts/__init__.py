"""The exported artifacts: SavedModel and LiteRT `.tflite`, their signatures, writing them and opening them again."""
