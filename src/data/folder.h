// folder.h: the image files of a folder, the simplest dataset (dVAE training
// reads one; the caption datasets of src/data build on the same listing).
#pragma once

// Lists the files in DIR and its subfolders (recursively; hidden entries
// skipped) whose names end in .png, .jpg or .jpeg (any case), sorted by path
// so that a run does not depend on the file system's order. DIR may be a
// comma-separated list of folders. *paths is an array of *n dalle_malloc'ed "DIR/NAME"
// strings; free with folder_free. DALLE_ERR (naming DIR) if it cannot be read
// or holds no image.
int folder_list_images(const char *dir, char ***paths, int *n);
void folder_free(char **paths, int n);
